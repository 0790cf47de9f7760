//! Trail's signing key: an Ed25519 seed in a file only its owner can read, created on first
//! start when none exists, and the public key's file format.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::signed::{hex, key_id, unhex};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: not an Ed25519 key (64 hex digits expected)")]
    Malformed(PathBuf),
    #[error(
        "{0}: the signing key is readable by others (mode {1:o}); `chmod 600` it, it signs the audit"
    )]
    TooOpen(PathBuf, u32),
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

/// The file a public key is published in, beside the checkpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyFile {
    pub algorithm: String,
    pub key_id: String,
    /// The 32-byte Ed25519 public key, hex.
    pub public_key: String,
}

impl PublicKeyFile {
    pub fn of(key: &VerifyingKey) -> Self {
        PublicKeyFile {
            algorithm: "ed25519".into(),
            key_id: key_id(key),
            public_key: hex(key.as_bytes()),
        }
    }

    pub fn key(&self) -> Option<VerifyingKey> {
        if self.algorithm != "ed25519" {
            return None;
        }
        VerifyingKey::from_bytes(&unhex::<32>(&self.public_key)?).ok()
    }
}

/// Reads the key at `path` if there is one (`verify` uses its public half; it never creates
/// a key).
pub fn load_existing(path: &Path) -> Result<Option<SigningKey>, KeyError> {
    match std::fs::metadata(path) {
        Ok(_) => load_or_create(path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KeyError::Io {
            path: path.into(),
            source,
        }),
    }
}

/// Reads the key at `path`, or creates one there (mode 0600) if the file does not exist.
pub fn load_or_create(path: &Path) -> Result<SigningKey, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            refuse_if_open(path)?;
            let seed = unhex::<32>(text.trim()).ok_or_else(|| KeyError::Malformed(path.into()))?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            // The operating system's generator, not a user-space one: this key is long-lived.
            rand::TryRngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut seed)
                .map_err(|e| KeyError::Random(e.to_string()))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let mut file = private_new_file(path).map_err(io)?;
            file.write_all(format!("{}\n", hex(&seed)).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io)?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) => Err(io(e)),
    }
}

/// Creates `path` for writing, failing if it exists; readable only by its owner on Unix.
fn private_new_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(unix)]
fn refuse_if_open(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|source| KeyError::Io {
            path: path.into(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen(path.into(), mode & 0o777));
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_if_open(_: &Path) -> Result<(), KeyError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_private_once_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/trail-signing-key");
        let first = load_or_create(&path).expect("create");
        let again = load_or_create(&path).expect("read");
        assert_eq!(first.to_bytes(), again.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            assert!(matches!(
                load_or_create(&path),
                Err(KeyError::TooOpen(_, 0o644))
            ));
        }
        let public = PublicKeyFile::of(&first.verifying_key());
        assert_eq!(public.key(), Some(first.verifying_key()));
    }
}
