//! The audit hash chain: `h_n = SHA-256(h_{n-1} ‖ canonical bytes of event n)`, `h_0` all
//! zeros. Editing, removing or reordering any stored row changes every later hash, so
//! recomputing the chain names the first row that does not match.
//!
//! Canonical bytes are written here, not by a JSON library's default: object keys sorted,
//! no whitespace, numbers as serde_json prints them. The form must never change for stored
//! rows, so it does not depend on a library feature (such as `preserve_order`) that another
//! crate in the build could switch on.

use ionroller_shared::store::RecordedEvent;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

pub const GENESIS: Hash = [0; 32];

/// The event's identity and content, in canonical form: an object with its keys in order.
pub fn canonical_bytes(event: &RecordedEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let meta = &event.metadata;
    let time =
        |t: &chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    out.push(b'{');
    let field = |out: &mut Vec<u8>, key: &str, first: bool| {
        if !first {
            out.push(b',');
        }
        write_string(out, key);
        out.push(b':');
    };
    field(&mut out, "actor", true);
    write_string(&mut out, &meta.actor);
    field(&mut out, "causation_id", false);
    match meta.causation_id {
        Some(c) => write_string(&mut out, &c.to_string()),
        None => out.extend_from_slice(b"null"),
    }
    field(&mut out, "correlation_id", false);
    write_string(&mut out, &meta.correlation_id.to_string());
    field(&mut out, "data", false);
    write_canonical(&mut out, &event.data);
    field(&mut out, "event_type", false);
    write_string(&mut out, &event.event_type);
    field(&mut out, "id", false);
    write_string(&mut out, &event.id.to_string());
    field(&mut out, "occurred_at", false);
    write_string(&mut out, &time(&meta.occurred_at));
    field(&mut out, "position", false);
    write_string(&mut out, &event.position.to_token());
    field(&mut out, "recorded_at", false);
    write_string(&mut out, &time(&event.recorded_at));
    field(&mut out, "revision", false);
    out.extend_from_slice(event.revision.0.to_string().as_bytes());
    field(&mut out, "schema_version", false);
    out.extend_from_slice(event.schema_version.to_string().as_bytes());
    field(&mut out, "stream", false);
    write_string(&mut out, event.stream.as_str());
    out.push(b'}');
    out
}

pub fn next_hash(previous: &Hash, event: &RecordedEvent) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(canonical_bytes(event));
    hasher.finalize().into()
}

pub fn to_hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(text: &str) -> Option<Hash> {
    if text.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(hash)
}

fn write_canonical(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, key);
                out.push(b':');
                write_canonical(out, &map[key]);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, item);
            }
            out.push(b']');
        }
        Value::String(s) => write_string(out, s),
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

/// A JSON string literal, escaped as serde_json escapes it.
fn write_string(out: &mut Vec<u8>, s: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::recorded;
    use serde_json::json;

    #[test]
    fn canonical_form_sorts_keys_at_every_depth() {
        let a = recorded(
            1,
            "x",
            json!({ "b": 1, "a": { "d": [1, { "z": 0, "y": 1 }], "c": "é" } }),
        );
        let mut b = a.clone();
        b.data = serde_json::from_str(r#"{"a":{"c":"é","d":[1,{"y":1,"z":0}]},"b":1}"#).unwrap();
        assert_eq!(canonical_bytes(&a), canonical_bytes(&b));
        let text = String::from_utf8(canonical_bytes(&a)).unwrap();
        assert!(
            text.contains(r#""data":{"a":{"c":"é","d":[1,{"y":1,"z":0}]},"b":1}"#),
            "{text}"
        );
    }

    #[test]
    fn any_change_changes_the_hash() {
        let a = recorded(1, "x", json!({ "v": 1 }));
        let h = next_hash(&GENESIS, &a);
        let mut changed = a.clone();
        changed.data = json!({ "v": 2 });
        assert_ne!(h, next_hash(&GENESIS, &changed));
        let mut actor = a.clone();
        actor.metadata.actor = "mallory".into();
        assert_ne!(h, next_hash(&GENESIS, &actor));
        assert_ne!(
            h,
            next_hash(&[1; 32], &a),
            "the previous hash is part of it"
        );
        assert_eq!(from_hex(&to_hex(&h)), Some(h));
        assert_eq!(from_hex("zz"), None);
    }
}
