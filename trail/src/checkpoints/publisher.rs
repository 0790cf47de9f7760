//! When and what trail publishes: after each committed batch the new rows' (position, hash)
//! are queued per sink, and a checkpoint is signed and published for every `every` rows
//! queued, and for whatever is queued once `interval` has passed since the last one.
//!
//! Why both: a count alone would leave a quiet log's newest events unanchored indefinitely (a
//! release and its rollback may be a handful of events), and an interval alone would make
//! checkpoints of unbounded size while catching up a long log. With the defaults (1000 rows,
//! 60 s) an event is anchored outside trail's database within a minute of being projected, a
//! checkpoint file holds at most 1000 entries (about 100 KB), and a busy log costs one
//! signature per 1000 events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use ionroller_projections::audit::AuditRow;
use ionroller_projections::chain::{Hash, GENESIS};

use super::key::PublicKeyFile;
use super::signed::{CheckpointBody, CheckpointError, Entry};
use super::sink::{CheckpointSink, SinkError};
use crate::db::{DbError, Projection};

/// Rows per checkpoint unless configured otherwise.
pub const DEFAULT_EVERY: u64 = 1000;
/// The longest a projected row waits to be published unless configured otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// How trail anchors its chain: the key, where to publish and how often.
#[derive(Clone)]
pub struct Anchoring {
    pub key: SigningKey,
    pub sinks: Vec<Arc<dyn CheckpointSink>>,
    pub every: u64,
    pub interval: Duration,
}

/// The signing key's file name in a data directory, unless `--signing-key` names another.
pub const KEY_FILE: &str = "trail-signing-key";
/// The directory checkpoints are published to in a data directory, unless configured.
pub const CHECKPOINT_DIR: &str = "checkpoints";

impl Anchoring {
    /// Trail's defaults in a data directory: the key in [`KEY_FILE`] (created on first
    /// start) and checkpoints published to the directory [`CHECKPOINT_DIR`].
    pub fn beside(data_dir: &std::path::Path) -> Result<Self, PublishError> {
        let key = super::key::load_or_create(&data_dir.join(KEY_FILE))?;
        let sink = super::sink::DirSink::open(data_dir.join(CHECKPOINT_DIR))?;
        Ok(Anchoring::new(key, vec![Arc::new(sink)]))
    }

    pub fn new(key: SigningKey, sinks: Vec<Arc<dyn CheckpointSink>>) -> Self {
        Anchoring {
            key,
            sinks,
            every: DEFAULT_EVERY,
            interval: DEFAULT_INTERVAL,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Key(#[from] super::key::KeyError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{sink}: the newest published checkpoint (row {seq}): {source}")]
    Newest {
        sink: String,
        seq: u64,
        source: CheckpointError,
    },
    #[error(
        "{0} holds the public key {1}, not this trail's {2}: give trail that key (--signing-key) or another place to publish"
    )]
    OtherKey(String, String, String),
}

/// One sink's queue: the rows projected since its newest published checkpoint.
struct Queue {
    sink: Arc<dyn CheckpointSink>,
    published: (u64, Hash),
    pending: Vec<Entry>,
    last_published: Instant,
}

impl Queue {
    fn covered(&self) -> u64 {
        self.published.0 + self.pending.len() as u64
    }
}

/// Publishes signed checkpoints to every sink of an [`Anchoring`].
pub struct Publisher {
    anchoring: Anchoring,
    queues: tokio::sync::Mutex<Vec<Queue>>,
}

impl Publisher {
    /// Publishes the public key to each sink (refusing a sink that holds another), finds each
    /// sink's newest checkpoint and queues the projection's rows after it.
    pub async fn resume(anchoring: Anchoring, db: &dyn Projection) -> Result<Self, PublishError> {
        let public = anchoring.key.verifying_key();
        let key_file = PublicKeyFile::of(&public);
        let mut queues = Vec::new();
        for sink in &anchoring.sinks {
            match sink.public_key().await? {
                Some(existing) if existing != key_file => {
                    return Err(PublishError::OtherKey(
                        sink.describe(),
                        existing.key_id,
                        key_file.key_id,
                    ))
                }
                Some(_) => {}
                None => sink.publish_key(&key_file).await?,
            }
            let published = match sink.seqs().await?.last() {
                Some(&seq) => {
                    let bytes = sink.read(seq).await?;
                    let newest = CheckpointBody::open(&bytes, &public).map_err(|source| {
                        PublishError::Newest {
                            sink: sink.describe(),
                            seq,
                            source,
                        }
                    })?;
                    let head =
                        ionroller_projections::chain::from_hex(&newest.head).unwrap_or(GENESIS);
                    (newest.seq, head)
                }
                None => (0, GENESIS),
            };
            let mut queue = Queue {
                sink: sink.clone(),
                published,
                pending: Vec::new(),
                last_published: Instant::now(),
            };
            let mut after = published.0;
            loop {
                let page = db.rows_after(after, 5000).await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                queue_rows(&mut queue, &page);
            }
            queues.push(queue);
        }
        Ok(Publisher {
            anchoring,
            queues: tokio::sync::Mutex::new(queues),
        })
    }

    pub fn anchoring(&self) -> &Anchoring {
        &self.anchoring
    }

    /// Rows queued and not yet published, summed over the sinks (0 when every sink is
    /// current).
    pub async fn pending(&self) -> usize {
        self.queues
            .lock()
            .await
            .iter()
            .map(|q| q.pending.len())
            .sum()
    }

    /// Queues rows just committed, then publishes whatever is due.
    pub async fn offer(&self, rows: &[AuditRow]) {
        {
            let mut queues = self.queues.lock().await;
            for queue in queues.iter_mut() {
                queue_rows(queue, rows);
            }
        }
        self.publish_due().await;
    }

    /// Publishes every full checkpoint queued, and a partial one where `interval` has passed.
    /// A sink that fails keeps its queue and is tried again on the next call; projecting
    /// goes on meanwhile.
    pub async fn publish_due(&self) {
        let mut queues = self.queues.lock().await;
        for queue in queues.iter_mut() {
            if let Err(e) = self.publish_queue(queue).await {
                tracing::warn!(sink = %queue.sink.describe(), error = %e, "publishing a trail checkpoint failed; will retry");
            }
        }
    }

    async fn publish_queue(&self, queue: &mut Queue) -> Result<(), SinkError> {
        let every = self.anchoring.every.max(1) as usize;
        loop {
            let full = queue.pending.len() >= every;
            let late = !queue.pending.is_empty()
                && queue.last_published.elapsed() >= self.anchoring.interval;
            if !full && !late {
                return Ok(());
            }
            let take = queue.pending.len().min(every);
            let entries: Vec<Entry> = queue.pending[..take].to_vec();
            let Some(body) = CheckpointBody::new(
                queue.published,
                entries,
                chrono::Utc::now(),
                &self.anchoring.key.verifying_key(),
            ) else {
                return Ok(());
            };
            let file = body
                .sign(&self.anchoring.key)
                .map_err(|e| SinkError::Invalid(e.to_string()))?;
            match queue.sink.publish(body.seq, &file).await {
                Ok(()) => {}
                // Another trail with this key (say `ionroller up` and a `trail serve` on one
                // data directory) published this checkpoint first: the same rows and head
                // mean the same chain, so it counts as published. Anything else is kept as
                // an error, retried and logged: two chains disagree.
                Err(SinkError::Exists(name)) => {
                    let existing = queue.sink.read(body.seq).await?;
                    let same = CheckpointBody::open(&existing, &self.anchoring.key.verifying_key())
                        .is_ok_and(|e| e.head == body.head && e.previous_seq == body.previous_seq);
                    if !same {
                        return Err(SinkError::Exists(name));
                    }
                }
                Err(e) => return Err(e),
            }
            let head = ionroller_projections::chain::from_hex(&body.head).unwrap_or(GENESIS);
            queue.published = (body.seq, head);
            queue.pending.drain(..take);
            queue.last_published = Instant::now();
        }
    }
}

/// Adds the rows that follow what `queue` covers; rows it already covers (a projection
/// catching up behind its published checkpoints) are skipped: `verify` checks those.
fn queue_rows(queue: &mut Queue, rows: &[AuditRow]) {
    for row in rows {
        if row.seq == queue.covered() + 1 {
            queue.pending.push(Entry {
                position: row.position.clone(),
                hash: row.hash.clone(),
            });
        }
    }
}
