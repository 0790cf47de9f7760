//! Config files as people write them (JSON with `//` and `/* */` comments and trailing commas,
//! as `examples/template.jsonc`), turned into the plain JSON the roller's API takes.
//!
//! Parsing here rather than stripping comments and letting the server parse means a syntax
//! error names the line and column in the user's own file. Anything JSON does not allow
//! besides comments and trailing commas (single quotes, bare keys, hex numbers…) is still
//! refused, and so is a key given twice in one object: the server's strict parse refused
//! that before, and turning the file into a value would otherwise keep the last one silently.

use std::collections::HashSet;

use jsonc_parser::ast::{ObjectPropName, Value as Node};
use jsonc_parser::common::Ranged;
use jsonc_parser::{parse_to_ast, CollectOptions, ParseOptions};

/// What is wrong with a file, and where (1-based line and column, in characters).
#[derive(Debug, PartialEq, Eq)]
pub struct JsoncError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for JsoncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for JsoncError {}

/// `text` as compact JSON text, or the first thing wrong with it.
pub fn to_json(text: &str) -> Result<String, JsoncError> {
    let options = ParseOptions {
        allow_comments: true,
        allow_trailing_commas: true,
        allow_loose_object_property_names: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    };
    let parsed =
        parse_to_ast(text, &CollectOptions::default(), &options).map_err(|e| JsoncError {
            line: e.line_display(),
            column: e.column_display(),
            message: e.kind().to_string(),
        })?;
    let root = parsed.value.ok_or_else(|| JsoncError {
        line: 1,
        column: 1,
        message: "the file holds no JSON value".into(),
    })?;
    if let Some((key, at)) = first_duplicate_key(&root) {
        let (line, column) = line_and_column(text, at);
        return Err(JsoncError {
            line,
            column,
            message: format!("key {key:?} is given twice in one object"),
        });
    }
    Ok(serde_json::Value::from(root).to_string())
}

/// The first key repeated within one object, and the byte offset of its repetition.
fn first_duplicate_key(node: &Node) -> Option<(String, usize)> {
    match node {
        Node::Object(object) => {
            let mut seen = HashSet::new();
            for prop in &object.properties {
                let name = match &prop.name {
                    ObjectPropName::String(s) => s.value.to_string(),
                    ObjectPropName::Word(w) => w.value.to_string(),
                };
                let start = prop.name.start();
                if !seen.insert(name.clone()) {
                    return Some((name, start));
                }
                if let Some(found) = first_duplicate_key(&prop.value) {
                    return Some(found);
                }
            }
            None
        }
        Node::Array(array) => array.elements.iter().find_map(first_duplicate_key),
        _ => None,
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> JsoncError {
        to_json(text).expect_err("refused")
    }

    #[test]
    fn comments_and_trailing_commas_become_plain_json() {
        let text = "// a service\n{\n  \"a\": 1, // one\n  /* two */ \"b\": [true, null,],\n}\n";
        assert_eq!(to_json(text).expect("parses"), r#"{"a":1,"b":[true,null]}"#);
    }

    #[test]
    fn numbers_and_strings_keep_their_meaning() {
        let json =
            to_json(r#"{"n": 4096, "f": 0.25, "neg": -3, "s": "a\"b\u00e9 // not a comment"}"#)
                .expect("parses");
        let back: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(back["n"], 4096);
        assert_eq!(back["f"], 0.25);
        assert_eq!(back["neg"], -3);
        assert_eq!(back["s"], "a\"bé // not a comment");
    }

    #[test]
    fn a_syntax_error_names_the_line_and_column_in_the_users_file() {
        // The comment lines count: the error is on line 4 of what the user sees, where the
        // comma belongs.
        let e = error("// header\n// more\n{\n  \"a\": 1 \"b\": 2\n}\n");
        assert_eq!((e.line, e.column), (4, 9), "{e}");
        assert_eq!(e.to_string(), "line 4, column 9: Expected comma");
        let e = error("{\n  \"a\": \n}");
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn what_json_does_not_allow_besides_comments_and_trailing_commas_is_refused() {
        for text in [
            "{'a': 1}",
            "{a: 1}",
            "{\"a\": 0x10}",
            "{\"a\": +1}",
            "{\"a\": .5}",
            "{\"a\": NaN}",
            "{\"a\": 1 \"b\": 2}",
            "[1, 2",
            "{} {}",
        ] {
            assert!(to_json(text).is_err(), "{text} was accepted");
        }
    }

    #[test]
    fn an_empty_file_is_refused() {
        assert_eq!(
            error(" // nothing\n").message,
            "the file holds no JSON value"
        );
    }

    #[test]
    fn a_key_given_twice_is_refused_where_it_repeats() {
        let e = error("{\n  \"rollout\": {\n    \"steps\": [1],\n    \"steps\": [2]\n  }\n}");
        assert_eq!((e.line, e.column), (4, 5), "{e}");
        assert!(e.message.contains("\"steps\""), "{e}");
        let e = error("[{\"a\": 1}, {\"b\": 1, \"b\": 2}]");
        assert_eq!((e.line, e.column), (1, 21), "{e}");
        // The same key in sibling objects is fine.
        assert!(to_json(r#"[{"a": 1}, {"a": 2}]"#).is_ok());
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(line_and_column("é\"x", 2), (1, 2));
        assert_eq!(line_and_column("ab\ncd", 4), (2, 2));
    }
}
