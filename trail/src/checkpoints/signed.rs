//! One signed chain checkpoint: the document trail publishes and `verify` reads back.
//!
//! A checkpoint covers the audit rows (that is, the log's events, one row each in log order)
//! `previous_seq + 1 ..= seq`. It carries the chain hash after each of them (so that a
//! verifier holding only the log and the checkpoints can name the first event that differs,
//! even after the projection was rebuilt from an edited log), the head it ends on, the
//! checkpoint before it, and the time it was made; it is signed with trail's Ed25519 key.
//!
//! # Exactly what is signed
//!
//! The file is one JSON object. The signature (hex, 128 digits) is in its `signature`
//! member; what is signed is the RFC 8785 (JCS) canonical form of the whole object without
//! that member, as UTF-8 bytes. Members unknown to this build are kept and stay signed, so a
//! later format can add some without breaking older verifiers.

use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use ionroller_projections::chain::{from_hex, to_hex, Hash, GENESIS};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `format` member of every checkpoint this build writes.
pub const FORMAT: &str = "ionroller-trail-checkpoint/1";

/// One event's place in a checkpoint: its log position token and the chain hash after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub position: String,
    pub hash: String,
}

/// A checkpoint's contents, without its signature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointBody {
    pub format: String,
    /// The last row covered (rows are numbered from 1 in log order).
    pub seq: u64,
    /// The log position of that row's event.
    pub position: String,
    /// The chain hash after row `seq` (hex).
    pub head: String,
    /// The last row of the checkpoint before (0 for the first).
    pub previous_seq: u64,
    /// The chain hash that checkpoint ended on (64 zeros for the first).
    pub previous_head: String,
    /// When trail made it (RFC 3339, UTC).
    pub created_at: String,
    /// Which key signed it: the first 16 hex digits of SHA-256 of the public key's bytes.
    pub key_id: String,
    /// One per row `previous_seq + 1 ..= seq`, in order.
    pub entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a checkpoint: {0}")]
    Malformed(String),
    #[error("the signature does not verify with the public key {0}")]
    BadSignature(String),
    #[error("inconsistent: {0}")]
    Inconsistent(String),
}

/// The short id of a public key, as checkpoints name it.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    to_hex(&digest)[..16].to_string()
}

impl CheckpointBody {
    /// A checkpoint after `previous` (seq, head) covering `entries`, which must not be empty.
    pub fn new(
        previous: (u64, Hash),
        entries: Vec<Entry>,
        created_at: DateTime<Utc>,
        key: &VerifyingKey,
    ) -> Option<Self> {
        let last = entries.last()?.clone();
        Some(CheckpointBody {
            format: FORMAT.into(),
            seq: previous.0 + entries.len() as u64,
            position: last.position,
            head: last.hash,
            previous_seq: previous.0,
            previous_head: to_hex(&previous.1),
            created_at: created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            key_id: key_id(key),
            entries,
        })
    }

    /// The signed file's text: this body plus `signature`.
    pub fn sign(&self, key: &SigningKey) -> Result<Vec<u8>, CheckpointError> {
        let mut value = serde_json::to_value(self)
            .map_err(|e| CheckpointError::Malformed(format!("encode: {e}")))?;
        let signature = key.sign(&canonical(&value)?);
        if let serde_json::Value::Object(members) = &mut value {
            members.insert(
                "signature".into(),
                serde_json::Value::String(hex(&signature.to_bytes())),
            );
        }
        serde_json::to_vec_pretty(&value)
            .map_err(|e| CheckpointError::Malformed(format!("encode: {e}")))
    }

    /// Reads a published file, checks its signature with `key` and its own consistency
    /// (entries count, head = last entry). Unknown members are tolerated (they are signed).
    pub fn open(bytes: &[u8], key: &VerifyingKey) -> Result<Self, CheckpointError> {
        let mut value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
        let signature = value
            .as_object_mut()
            .and_then(|members| members.remove("signature"))
            .and_then(|s| s.as_str().and_then(unhex::<64>))
            .ok_or_else(|| CheckpointError::Malformed("no signature of 128 hex digits".into()))?;
        key.verify(&canonical(&value)?, &Signature::from_bytes(&signature))
            .map_err(|_| CheckpointError::BadSignature(key_id(key)))?;
        let body: CheckpointBody =
            serde_json::from_value(value).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
        body.check()?;
        Ok(body)
    }

    fn check(&self) -> Result<(), CheckpointError> {
        let fail = |what: String| Err(CheckpointError::Inconsistent(what));
        if self.seq != self.previous_seq + self.entries.len() as u64 {
            return fail(format!(
                "seq {} is not previous_seq {} + {} entries",
                self.seq,
                self.previous_seq,
                self.entries.len()
            ));
        }
        match self.entries.last() {
            Some(last) if last.hash == self.head && last.position == self.position => {}
            _ => return fail(format!("seq {}: head is not its last entry", self.seq)),
        }
        if from_hex(&self.head).is_none() || from_hex(&self.previous_head).is_none() {
            return fail(format!("seq {}: a hash is not 64 hex digits", self.seq));
        }
        Ok(())
    }

    /// The chain (seq, head) this checkpoint starts after.
    pub fn previous(&self) -> (u64, Hash) {
        (
            self.previous_seq,
            from_hex(&self.previous_head).unwrap_or(GENESIS),
        )
    }
}

fn canonical(value: &serde_json::Value) -> Result<Vec<u8>, CheckpointError> {
    serde_json_canonicalizer::to_vec(value)
        .map_err(|e| CheckpointError::Malformed(format!("canonical form: {e}")))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn body(signer: &SigningKey) -> CheckpointBody {
        let entries = (1..=3)
            .map(|i| Entry {
                position: format!("{i}-0"),
                hash: to_hex(&[i as u8; 32]),
            })
            .collect();
        CheckpointBody::new((0, GENESIS), entries, Utc::now(), &signer.verifying_key())
            .expect("entries")
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_key_and_no_other() {
        let signer = key(1);
        let cp = body(&signer);
        let file = cp.sign(&signer).expect("sign");
        assert_eq!(
            CheckpointBody::open(&file, &signer.verifying_key()).ok(),
            Some(cp)
        );
        assert!(matches!(
            CheckpointBody::open(&file, &key(2).verifying_key()),
            Err(CheckpointError::BadSignature(_))
        ));
    }

    #[test]
    fn any_edit_to_a_signed_checkpoint_breaks_its_signature() {
        let signer = key(1);
        let file = body(&signer).sign(&signer).expect("sign");
        let text = String::from_utf8(file).expect("UTF-8");
        let edited = text.replace("\"2-0\"", "\"9-0\"");
        assert_ne!(edited, text);
        assert!(matches!(
            CheckpointBody::open(edited.as_bytes(), &signer.verifying_key()),
            Err(CheckpointError::BadSignature(_))
        ));
        // A member added after signing is signed over too, so it also breaks the signature.
        let added = text.replacen('{', "{\"note\":\"x\",", 1);
        assert!(matches!(
            CheckpointBody::open(added.as_bytes(), &signer.verifying_key()),
            Err(CheckpointError::BadSignature(_))
        ));
    }

    #[test]
    fn a_self_inconsistent_checkpoint_is_refused_even_when_signed() {
        let signer = key(1);
        let mut cp = body(&signer);
        cp.head = to_hex(&[9; 32]);
        let file = cp.sign(&signer).expect("sign");
        assert!(matches!(
            CheckpointBody::open(&file, &signer.verifying_key()),
            Err(CheckpointError::Inconsistent(_))
        ));
    }
}
