//! Where signed checkpoints are published: the [`CheckpointSink`] trait, and the directory
//! sink. (An object-store sink lives in its own crate, so that trail does not build a cloud
//! SDK.) A sink is write-once: a checkpoint already published is never replaced.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::key::PublicKeyFile;

/// The public key's name in a sink.
pub const PUBLIC_KEY_NAME: &str = "public-key.json";

/// A checkpoint's name in a sink: its last row, zero-padded so names sort in seq order.
pub fn checkpoint_name(seq: u64) -> String {
    format!("checkpoint-{seq:020}.json")
}

/// The seq a checkpoint's name carries; `None` for anything else in the sink.
pub fn seq_of(name: &str) -> Option<u64> {
    name.strip_prefix("checkpoint-")?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{location}: {source}")]
    Io {
        location: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Something different is already published under this name.
    #[error(
        "{0} is already published with other contents; published checkpoints are never replaced"
    )]
    Exists(String),
    #[error("{0}")]
    Invalid(String),
}

/// Somewhere outside trail's database that keeps published checkpoints and the public key.
#[async_trait]
pub trait CheckpointSink: Send + Sync {
    /// For logs and the command line: `directory /srv/trail-checkpoints`.
    fn describe(&self) -> String;

    /// Publishes the public key; fails with [`SinkError::Exists`] if another is there.
    async fn publish_key(&self, key: &PublicKeyFile) -> Result<(), SinkError>;

    /// The published public key, if any.
    async fn public_key(&self) -> Result<Option<PublicKeyFile>, SinkError>;

    /// Publishes a signed checkpoint file whose last row is `seq`. Publishing the same bytes
    /// again succeeds; other bytes under that name fail with [`SinkError::Exists`].
    async fn publish(&self, seq: u64, file: &[u8]) -> Result<(), SinkError>;

    /// The seqs of every published checkpoint, ascending.
    async fn seqs(&self) -> Result<Vec<u64>, SinkError>;

    /// The bytes of the checkpoint ending at `seq`.
    async fn read(&self, seq: u64) -> Result<Vec<u8>, SinkError>;
}

/// Checkpoints as files in a directory (one per checkpoint, plus the public key).
pub struct DirSink {
    dir: PathBuf,
}

impl DirSink {
    /// Creates the directory if needed.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, SinkError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        Ok(DirSink { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn io_error(path: &Path, e: std::io::Error) -> SinkError {
    SinkError::Io {
        location: path.display().to_string(),
        source: Box::new(e),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SinkError> + Send + 'static,
) -> Result<T, SinkError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SinkError::Invalid(format!("a file task failed: {e}")))?
}

/// Writes `bytes` to `dir/name` unless it exists: a temporary file, synced, then hard-linked
/// into place (a link never replaces an existing name), then the directory synced.
fn write_once(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), SinkError> {
    let target = dir.join(name);
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    written.map_err(|e| io_error(&temp, e))?;
    let linked = std::fs::hard_link(&temp, &target);
    // The temporary name is no longer needed whether or not the link was made.
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            // Make the new name durable before saying it is published.
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error(dir, e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match std::fs::read(&target) {
            Ok(existing) if existing == bytes => Ok(()),
            Ok(_) => Err(SinkError::Exists(target.display().to_string())),
            Err(e) => Err(io_error(&target, e)),
        },
        Err(e) => Err(io_error(&target, e)),
    }
}

#[async_trait]
impl CheckpointSink for DirSink {
    fn describe(&self) -> String {
        format!("directory {}", self.dir.display())
    }

    async fn publish_key(&self, key: &PublicKeyFile) -> Result<(), SinkError> {
        let mut bytes = serde_json::to_vec_pretty(key)
            .map_err(|e| SinkError::Invalid(format!("encode the public key: {e}")))?;
        bytes.push(b'\n');
        let dir = self.dir.clone();
        blocking(move || write_once(&dir, PUBLIC_KEY_NAME, &bytes)).await
    }

    async fn public_key(&self) -> Result<Option<PublicKeyFile>, SinkError> {
        let path = self.dir.join(PUBLIC_KEY_NAME);
        blocking(move || match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| SinkError::Invalid(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path, e)),
        })
        .await
    }

    async fn publish(&self, seq: u64, file: &[u8]) -> Result<(), SinkError> {
        let (dir, bytes) = (self.dir.clone(), file.to_vec());
        blocking(move || write_once(&dir, &checkpoint_name(seq), &bytes)).await
    }

    async fn seqs(&self) -> Result<Vec<u64>, SinkError> {
        let dir = self.dir.clone();
        blocking(move || {
            let mut seqs = Vec::new();
            for entry in std::fs::read_dir(&dir).map_err(|e| io_error(&dir, e))? {
                let entry = entry.map_err(|e| io_error(&dir, e))?;
                if let Some(seq) = entry.file_name().to_str().and_then(seq_of) {
                    seqs.push(seq);
                }
            }
            seqs.sort_unstable();
            Ok(seqs)
        })
        .await
    }

    async fn read(&self, seq: u64) -> Result<Vec<u8>, SinkError> {
        let path = self.dir.join(checkpoint_name(seq));
        blocking(move || std::fs::read(&path).map_err(|e| io_error(&path, e))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_published_checkpoint_is_never_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = DirSink::open(dir.path().join("out")).expect("open");
        sink.publish(1000, b"first").await.expect("publish");
        sink.publish(1000, b"first").await.expect("the same again");
        assert!(matches!(
            sink.publish(1000, b"other").await,
            Err(SinkError::Exists(_))
        ));
        sink.publish(20, b"x").await.expect("publish");
        assert_eq!(sink.seqs().await.expect("seqs"), vec![20, 1000]);
        assert_eq!(sink.read(1000).await.expect("read"), b"first");
        assert_eq!(sink.public_key().await.expect("key"), None);
    }

    #[test]
    fn names_sort_in_seq_order_and_read_back() {
        assert!(checkpoint_name(999) < checkpoint_name(1000));
        assert_eq!(seq_of(&checkpoint_name(1234)), Some(1234));
        assert_eq!(seq_of(PUBLIC_KEY_NAME), None);
    }
}
