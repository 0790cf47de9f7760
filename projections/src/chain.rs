//! The audit hash chain. Editing, removing or reordering any stored row changes every later
//! hash, so recomputing the chain names the first row that does not match.
//!
//! # Exactly what is hashed
//!
//! So that a verifier in any language can recompute the chain from the event log:
//!
//! ```text
//! h_0 = 32 zero bytes
//! h_n = SHA-256( h_{n-1} ‖ JCS(envelope(event_n)) )
//! ```
//!
//! where `h_{n-1}` is the 32 raw bytes (not hex), `‖` is concatenation, events come in log
//! order (by position), and `JCS` is the JSON Canonicalization Scheme of RFC 8785, encoded as
//! UTF-8. The envelope is a JSON object with exactly these twelve members, taken from the
//! event as the store recorded it:
//!
//! | member | value |
//! |---|---|
//! | `actor` | string: the metadata's actor (`roller`, `alice@example.com`) |
//! | `causation_id` | string: the metadata's causation id as a UUID, or `null` when it has none |
//! | `correlation_id` | string: the metadata's correlation id as a UUID |
//! | `data` | the event's data: the JSON value exactly as stored |
//! | `event_type` | string: the stored type (`release-requested`) |
//! | `id` | string: the event id as a UUID |
//! | `occurred_at` | string: the metadata's time, RFC 3339 in UTC with six fractional digits and `Z` (`2027-01-15T08:00:00.000000Z`) |
//! | `position` | string: the position token, `<commit>-<prepare>` in decimal (`42-0`) |
//! | `recorded_at` | string: the store's time, formatted as `occurred_at` |
//! | `revision` | number: the event's revision in its stream, from 0 |
//! | `schema_version` | number: the event's schema version |
//! | `stream` | string: the stream id (`service:hello`) |
//!
//! UUIDs are written lowercase and hyphenated (`8-4-4-4-12`). JCS then fixes every other
//! choice: members sorted by their names' UTF-16 code units at every depth, no whitespace,
//! strings escaped only where JSON requires (`\"`, `\\`, and U+0000 to U+001F, as `\b` `\t`
//! `\n` `\f` `\r` or lowercase `\u00xx`), and every number written as ECMAScript writes the
//! IEEE-754 double it denotes (`100.0` is `100`, `1e30` is `1e+30`, `-0` is `0`; integers
//! beyond 2^53 are rounded to a double, as I-JSON requires). The hex form of a hash, as trail
//! shows it, is lowercase.
//!
//! These bytes must never change for stored rows: a change makes every stored hash wrong (a
//! projection made before it must be rebuilt). The canonical form is RFC 8785, implemented by
//! `serde_json_canonicalizer`, rather than serde_json's default output, so it does not depend
//! on a serde_json feature (`preserve_order`, `arbitrary_precision`) another crate in the
//! build could switch on, and so that other languages have a specified form to follow.

use chrono::{DateTime, SecondsFormat, Utc};
use ionroller_shared::store::RecordedEvent;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

pub const GENESIS: Hash = [0; 32];

/// The envelope described in the module docs. Members are named here as they are hashed;
/// their order in this struct does not matter, since JCS sorts them.
#[derive(Serialize)]
struct Envelope<'a> {
    actor: &'a str,
    causation_id: Option<String>,
    correlation_id: String,
    data: &'a serde_json::Value,
    event_type: &'a str,
    id: String,
    occurred_at: String,
    position: String,
    recorded_at: String,
    revision: u64,
    schema_version: u32,
    stream: &'a str,
}

/// The bytes hashed for `event`: its envelope in RFC 8785 canonical form.
///
/// Fails only if the envelope cannot be written as JSON at all, which a `serde_json::Value`
/// (finite numbers, string keys) written into memory never causes.
pub fn canonical_bytes(event: &RecordedEvent) -> Result<Vec<u8>, serde_json::Error> {
    let meta = &event.metadata;
    let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    serde_json_canonicalizer::to_vec(&Envelope {
        actor: &meta.actor,
        causation_id: meta.causation_id.map(|c| c.hyphenated().to_string()),
        correlation_id: meta.correlation_id.hyphenated().to_string(),
        data: &event.data,
        event_type: &event.event_type,
        id: event.id.0.hyphenated().to_string(),
        occurred_at: time(&meta.occurred_at),
        position: event.position.to_token(),
        recorded_at: time(&event.recorded_at),
        revision: event.revision.0,
        schema_version: event.schema_version,
        stream: event.stream.as_str(),
    })
}

pub fn next_hash(previous: &Hash, event: &RecordedEvent) -> Hash {
    // A recorded event always has a canonical form (see `canonical_bytes`); a failure here
    // is a bug in the build (say, a serializer that rejects what serde_json accepted), and
    // hashing anything else would make a chain no verifier could reproduce.
    let bytes = canonical_bytes(event).expect("a recorded event always has a canonical form");
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(bytes);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::recorded;
    use serde_json::{json, Value};
    use uuid::Uuid;

    fn canonical_text(event: &RecordedEvent) -> String {
        String::from_utf8(canonical_bytes(event).expect("canonical")).expect("UTF-8")
    }

    /// JCS of `data` as the chain writes it: the `data` member of an event's envelope.
    fn jcs_of_data(data: Value) -> String {
        let text = canonical_text(&recorded(0, "x", data));
        let start = text.find(r#""data":"#).expect("a data member") + r#""data":"#.len();
        let end = text
            .find(r#","event_type":"#)
            .expect("event_type follows data");
        text[start..end].to_string()
    }

    #[test]
    fn canonical_form_sorts_keys_at_every_depth() {
        let a = recorded(
            1,
            "x",
            json!({ "b": 1, "a": { "d": [1, { "z": 0, "y": 1 }], "c": "é" } }),
        );
        let mut b = a.clone();
        b.data = serde_json::from_str(r#"{"a":{"c":"é","d":[1,{"y":1,"z":0}]},"b":1}"#)
            .expect("valid JSON");
        assert_eq!(canonical_bytes(&a).ok(), canonical_bytes(&b).ok());
        let text = canonical_text(&a);
        assert!(
            text.contains(r#""data":{"a":{"c":"é","d":[1,{"y":1,"z":0}]},"b":1}"#),
            "{text}"
        );
    }

    /// Known answers computed outside Rust, from the envelope as the module docs describe it,
    /// by two independent Python implementations of RFC 8785 (`rfc8785` and `jcs` on PyPI),
    /// then SHA-256 over the previous hash's raw bytes and the canonical bytes.
    #[test]
    fn known_answers_from_an_independent_implementation() {
        let mut first = recorded(
            7,
            "alarm-changed",
            json!({
                "alarm": "p99-latency", "value": 100.0, "threshold": 0.5, "tiny": 1e-7,
                "big": 1e21, "note": "tab\there \u{1f} \"q\" é",
                "zz": { "\u{1F600}": 1, "\u{FB33}": 2, "b": [true, null, -0.0] },
            }),
        );
        first.metadata.actor = "zoë@example.com".into();
        let mut second = recorded(
            8,
            "release-requested",
            json!({ "version": "v2", "count": 3 }),
        );
        second.metadata.causation_id = Some(Uuid::from_u128(8));

        assert_eq!(
            canonical_text(&first),
            concat!(
                r#"{"actor":"zoë@example.com","causation_id":null,"#,
                r#""correlation_id":"00000000-0000-0000-0000-000000000000","#,
                r#""data":{"alarm":"p99-latency","big":1e+21,"note":"tab\there \u001f \"q\" é","#,
                r#""threshold":0.5,"tiny":1e-7,"value":100,"zz":{"b":[true,null,0],"#,
                "\"\u{1F600}\":1,\"\u{FB33}\":2}},",
                r#""event_type":"alarm-changed","id":"00000000-0000-0000-0000-000000000008","#,
                r#""occurred_at":"2027-01-15T08:00:07.000000Z","position":"8-0","#,
                r#""recorded_at":"2027-01-15T08:00:07.000000Z","revision":7,"#,
                r#""schema_version":1,"stream":"service:hello"}"#,
            )
        );
        let h1 = next_hash(&GENESIS, &first);
        assert_eq!(
            to_hex(&h1),
            "3703645abbf060a125987ab1b6afb2dfaa06ed27dd42b7812efe2f04658cbe8b"
        );
        assert_eq!(
            to_hex(&next_hash(&h1, &second)),
            "711c5dcc22267599f2b6cb5ed0b86ff7af97a154e2b493489b42b159ee11d655"
        );
    }

    /// RFC 8785's own examples: section 3.2.2 (numbers, string escapes, literals), section
    /// 3.2.3 (members sorted by UTF-16 code units, not by UTF-8 bytes or code points) and
    /// Appendix B (numbers given as the bits of an IEEE-754 double). The expected text is the
    /// RFC's.
    #[test]
    fn rfc_8785_examples() {
        let input = r#"{
            "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        assert_eq!(
            jcs_of_data(serde_json::from_str(input).expect("RFC 3.2.2 input")),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );

        let input = r#"{
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\ud83d\ude00": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        // U+0080 is written as is: JCS escapes only U+0000 to U+001F.
        assert_eq!(
            jcs_of_data(serde_json::from_str(input).expect("RFC 3.2.3 input")),
            concat!(
                "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",",
                "\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",",
                "\"\u{1F600}\":\"Emoji: Grinning Face\",",
                "\"\u{FB33}\":\"Hebrew Letter Dalet With Dagesh\"}",
            )
        );

        for (bits, expected) in [
            (0x0000_0000_0000_0000u64, "0"),
            (0x8000_0000_0000_0000, "0"),
            (0x0000_0000_0000_0001, "5e-324"),
            (0x8000_0000_0000_0001, "-5e-324"),
            (0x7fef_ffff_ffff_ffff, "1.7976931348623157e+308"),
            (0xffef_ffff_ffff_ffff, "-1.7976931348623157e+308"),
            (0x4340_0000_0000_0000, "9007199254740992"),
            (0x4430_0000_0000_0000, "295147905179352830000"),
            (0x44b5_2d02_c7e1_4af5, "9.999999999999997e+22"),
            (0x44b5_2d02_c7e1_4af6, "1e+23"),
            (0x44b5_2d02_c7e1_4af7, "1.0000000000000001e+23"),
            (0x444b_1ae4_d6e2_ef4e, "999999999999999700000"),
            (0x444b_1ae4_d6e2_ef4f, "999999999999999900000"),
            (0x444b_1ae4_d6e2_ef50, "1e+21"),
            (0x3eb0_c6f7_a0b5_ed8c, "9.999999999999997e-7"),
            (0x3eb0_c6f7_a0b5_ed8d, "0.000001"),
            (0x41b3_de43_5555_5553, "333333333.3333332"),
            (0x41b3_de43_5555_5555, "333333333.3333333"),
            (0x41b3_de43_5555_5556, "333333333.3333334"),
            (0xbecb_f647_612f_3696, "-0.0000033333333333333333"),
            (0x4314_3ff3_c1cb_0959, "1424953923781206.2"),
        ] {
            let number = f64::from_bits(bits);
            assert_eq!(
                jcs_of_data(json!([number])),
                format!("[{expected}]"),
                "{bits:#018x}"
            );
        }
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
