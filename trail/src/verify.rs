//! `verify`: one pass over the log that recomputes every audit row (chain hash and every
//! stored column) and compares it with
//!
//! - the projection's rows, by seq: a row that differs is named with the column that differs,
//!   a missing row (deleted, or the table truncated) with the log position it should record;
//! - each sink's published, signed checkpoints, entry by entry: the first log position whose
//!   chain hash differs from what was published names an event edited, removed, inserted or
//!   reordered in the log, even when the projection was rebuilt from it afterwards.
//!
//! Then the ends: published checkpoints beyond the end of the log (the log lost events), a
//! projection that ends before the newest published checkpoint or its own checkpoint (rows
//! deleted from the end), rows beyond the log.
//!
//! What it cannot see is said in README and ARCHITECTURE: events after the newest published
//! checkpoint are checked only against the projection, and an event appended to the log by
//! someone with write access to it is indistinguishable from one the roller appended.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use ionroller_projections::audit::{version_matches, AuditChain, AuditRow};
use ionroller_projections::chain::{to_hex, GENESIS};
use ionroller_shared::store::{EventStore, ReadFilter, RecordedEvent};
use serde::{Deserialize, Serialize};

use crate::checkpoints::signed::{key_id, CheckpointBody, Entry};
use crate::checkpoints::CheckpointSink;
use crate::db::{DbError, Projection};

const PAGE: usize = 5000;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("read the log: {0}")]
    Log(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Which key checkpoints are checked with, and why that one.
#[derive(Clone, Debug)]
pub enum TrustedKey {
    /// Given by the person verifying (`--public-key`): the strongest.
    Pinned(VerifyingKey),
    /// The public half of trail's own signing key.
    Own(VerifyingKey),
    /// Whatever key the sink itself publishes: proves only that the checkpoints were signed
    /// by whoever wrote that key there.
    Published,
}

/// A sink to check the log against, with the key to check it with.
#[derive(Clone)]
pub struct Anchor {
    pub sink: Arc<dyn CheckpointSink>,
    pub key: TrustedKey,
}

/// One thing verify found wrong.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Finding {
    /// A published checkpoint that cannot be trusted (bad signature, malformed, or not
    /// following the one before it).
    BadCheckpoint { sink: String, seq: u64, why: String },
    /// The log differs from a published checkpoint first at row `seq`: the checkpoint
    /// recorded `published_position` there; the log has `log_position` (none: the log ends).
    LogDiffers {
        sink: String,
        seq: u64,
        published_position: String,
        log_position: Option<String>,
    },
    /// The projection's row `seq` differs from the row its event implies, in `column`.
    RowDiffers {
        seq: u64,
        position: String,
        column: String,
    },
    /// The projection lacks row `seq` (the event at `position`), which the log and a
    /// checkpoint (published or the projection's own) say it should hold.
    RowMissing {
        seq: u64,
        position: String,
        evidence: String,
    },
    /// A projection row with no event in the log.
    RowWithoutEvent { seq: u64, position: String },
}

impl Finding {
    /// The log position this finding names, if any.
    pub fn position(&self) -> Option<&str> {
        match self {
            Finding::BadCheckpoint { .. } => None,
            Finding::LogDiffers {
                published_position, ..
            } => Some(published_position),
            Finding::RowDiffers { position, .. }
            | Finding::RowMissing { position, .. }
            | Finding::RowWithoutEvent { position, .. } => Some(position),
        }
    }

    pub fn seq(&self) -> u64 {
        match self {
            Finding::BadCheckpoint { seq, .. }
            | Finding::LogDiffers { seq, .. }
            | Finding::RowDiffers { seq, .. }
            | Finding::RowMissing { seq, .. }
            | Finding::RowWithoutEvent { seq, .. } => *seq,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::BadCheckpoint { sink, seq, why } => {
                write!(f, "published checkpoint for row {seq} in {sink} cannot be trusted: {why}")
            }
            Finding::LogDiffers {
                sink,
                seq,
                published_position,
                log_position: Some(log),
            } if log == published_position => write!(
                f,
                "the log's event at position {log} (row {seq}) differs from the checkpoint published in {sink} (edited, or an earlier event removed, inserted or reordered)"
            ),
            Finding::LogDiffers {
                sink,
                seq,
                published_position,
                log_position: Some(log),
            } => write!(
                f,
                "the log differs from the checkpoint published in {sink} at row {seq}: published position {published_position}, the log has {log} there (an event removed, inserted or reordered)"
            ),
            Finding::LogDiffers {
                sink,
                seq,
                published_position,
                log_position: None,
            } => write!(
                f,
                "the log ends before row {seq} (position {published_position}), which a checkpoint published in {sink} covers (events removed from the log)"
            ),
            Finding::RowDiffers {
                seq,
                position,
                column,
            } => write!(
                f,
                "audit row {seq} (log position {position}) does not match the log: its {column} differs"
            ),
            Finding::RowMissing {
                seq,
                position,
                evidence,
            } => write!(
                f,
                "audit row {seq} (log position {position}) is missing from the projection, which {evidence} (rows deleted)"
            ),
            Finding::RowWithoutEvent { seq, position } => write!(
                f,
                "audit row {seq} (log position {position}) has no event in the log"
            ),
        }
    }
}

/// What one sink held and what it covered.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnchorSummary {
    pub sink: String,
    /// The id of the key the checkpoints were checked with.
    pub key_id: Option<String>,
    /// `pinned`, `own` (trail's signing key) or `published` (the sink's own key file).
    pub key_source: String,
    pub checkpoints: u64,
    /// The newest checkpoint whose signature verified: its last row and log position.
    pub newest_seq: u64,
    pub newest_position: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// Events read from the log.
    pub events: u64,
    /// Projection rows compared with the log.
    pub rows: u64,
    pub anchors: Vec<AnchorSummary>,
    /// Events after every sink's newest checkpoint: checked against the projection only.
    pub unanchored: u64,
    /// Empty when everything matched. At most one per sink and one for the projection:
    /// after the first difference every later hash differs too.
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }

    /// The finding naming the earliest row.
    pub fn first(&self) -> Option<&Finding> {
        self.findings.iter().min_by_key(|f| f.seq())
    }
}

/// Reads one sink's checkpoints in order, checking each, and yields their entries.
struct PublishedEntries {
    sink: Arc<dyn CheckpointSink>,
    key: Option<VerifyingKey>,
    seqs: VecDeque<u64>,
    entries: VecDeque<Entry>,
    /// The (seq, head hex) the next checkpoint must start after.
    previous: (u64, String),
    summary: AnchorSummary,
    /// Set once this sink has a finding (or ran out of trustworthy checkpoints).
    done: bool,
}

impl PublishedEntries {
    async fn open(anchor: &Anchor) -> Result<(Self, Option<Finding>), VerifyError> {
        let sink = anchor.sink.clone();
        let describe = sink.describe();
        let bad = |seq, why: String| Finding::BadCheckpoint {
            sink: describe.clone(),
            seq,
            why,
        };
        let (key, source, mut finding) = match &anchor.key {
            TrustedKey::Pinned(k) => (Some(*k), "pinned", None),
            TrustedKey::Own(k) => (Some(*k), "own", None),
            TrustedKey::Published => match sink.public_key().await {
                Ok(Some(file)) => match file.key() {
                    Some(k) => (Some(k), "published", None),
                    None => (
                        None,
                        "published",
                        Some(bad(0, "its public key file is not an Ed25519 key".into())),
                    ),
                },
                Ok(None) => (None, "published", None),
                Err(e) => (None, "published", Some(bad(0, e.to_string()))),
            },
        };
        let seqs: VecDeque<u64> = match sink.seqs().await {
            Ok(seqs) => seqs.into(),
            Err(e) => {
                finding = Some(bad(0, e.to_string()));
                VecDeque::new()
            }
        };
        if key.is_none() && !seqs.is_empty() && finding.is_none() {
            finding = Some(bad(
                seqs[0],
                "no public key to check its signature with".into(),
            ));
        }
        let mut published = PublishedEntries {
            summary: AnchorSummary {
                sink: describe.clone(),
                key_id: key.as_ref().map(key_id),
                key_source: source.into(),
                checkpoints: 0,
                newest_seq: 0,
                newest_position: None,
            },
            sink,
            key,
            seqs,
            entries: VecDeque::new(),
            previous: (0, to_hex(&GENESIS)),
            done: finding.is_some(),
        };
        // The newest checkpoint is checked first: truncation is judged against it.
        if let (Some(&newest), Some(key)) = (published.seqs.back(), published.key) {
            match published.load(newest, &key).await {
                Ok(body) => {
                    published.summary.newest_seq = body.seq;
                    published.summary.newest_position = Some(body.position);
                }
                Err(why) => {
                    finding.get_or_insert(bad(newest, why));
                    published.done = true;
                }
            }
        }
        Ok((published, finding))
    }

    async fn load(&self, seq: u64, key: &VerifyingKey) -> Result<CheckpointBody, String> {
        let bytes = self.sink.read(seq).await.map_err(|e| e.to_string())?;
        let body = CheckpointBody::open(&bytes, key).map_err(|e| e.to_string())?;
        if body.seq != seq {
            return Err(format!(
                "it is named for row {seq} but covers up to row {}",
                body.seq
            ));
        }
        Ok(body)
    }

    /// The next published entry; `Ok(None)` past the newest checkpoint.
    async fn next(&mut self) -> Result<Option<Entry>, Finding> {
        if self.done {
            return Ok(None);
        }
        if self.entries.is_empty() {
            let Some(seq) = self.seqs.pop_front() else {
                return Ok(None);
            };
            let bad = |why: String| Finding::BadCheckpoint {
                sink: self.sink.describe(),
                seq,
                why,
            };
            let Some(key) = self.key else {
                return Err(bad("no public key".into()));
            };
            let body = self.load(seq, &key).await.map_err(bad)?;
            if (body.previous_seq, body.previous_head.as_str())
                != (self.previous.0, self.previous.1.as_str())
            {
                return Err(Finding::BadCheckpoint {
                    sink: self.sink.describe(),
                    seq,
                    why: format!(
                        "it follows row {} but the checkpoint before it ends at row {} (a checkpoint is missing, or was replaced)",
                        body.previous_seq, self.previous.0
                    ),
                });
            }
            self.previous = (body.seq, body.head.clone());
            self.summary.checkpoints += 1;
            self.entries = body.entries.into();
        }
        Ok(self.entries.pop_front())
    }
}

/// The projection's rows in seq order, a page at a time, with one row of look-ahead.
struct Rows<'a> {
    db: &'a dyn Projection,
    buffer: VecDeque<AuditRow>,
    after: u64,
    exhausted: bool,
}

impl Rows<'_> {
    async fn peek(&mut self) -> Result<Option<&AuditRow>, DbError> {
        if self.buffer.is_empty() && !self.exhausted {
            let page = self.db.rows_after(self.after, PAGE).await?;
            match page.last() {
                Some(last) => self.after = last.seq,
                None => self.exhausted = true,
            }
            self.buffer = page.into();
        }
        Ok(self.buffer.front())
    }
}

/// The first column in which `stored` differs from `expected`, the row this build projects
/// from `event` (a `version` projected by an older build, which filled it less, matches too).
fn differing_column(
    expected: &AuditRow,
    event: &RecordedEvent,
    stored: &AuditRow,
) -> Option<&'static str> {
    let columns: [(&str, bool); 13] = [
        ("seq", expected.seq == stored.seq),
        ("position", expected.position == stored.position),
        ("stream", expected.stream == stored.stream),
        ("service", expected.service == stored.service),
        ("revision", expected.revision == stored.revision),
        ("event_type", expected.event_type == stored.event_type),
        ("actor", expected.actor == stored.actor),
        ("occurred_at", expected.occurred_at == stored.occurred_at),
        ("recorded_at", expected.recorded_at == stored.recorded_at),
        (
            "version",
            version_matches(expected, event, stored.version.as_ref()),
        ),
        ("summary", expected.summary == stored.summary),
        ("data", expected.data == stored.data),
        ("hash", expected.hash == stored.hash),
    ];
    columns.iter().find(|(_, same)| !same).map(|(c, _)| *c)
}

/// Verifies `db` against `store`, and `store` against each anchor's checkpoints.
pub async fn verify(
    store: &dyn EventStore,
    db: &dyn Projection,
    anchors: &[Anchor],
) -> Result<Report, VerifyError> {
    let mut report = Report::default();
    let mut published = Vec::new();
    for anchor in anchors {
        let (entries, finding) = PublishedEntries::open(anchor).await?;
        report.findings.extend(finding);
        published.push(entries);
    }
    let mut rows = Rows {
        db,
        buffer: VecDeque::new(),
        after: 0,
        exhausted: false,
    };
    let mut rows_done = false;
    let mut last_row: Option<AuditRow> = None;
    // The first row the projection does not hold although the log has its event.
    let mut lacking: Option<(u64, String)> = None;
    let mut chain = AuditChain::default();
    let mut after = None;
    'log: loop {
        let page = store
            .read_all(after, PAGE, &ReadFilter::all())
            .await
            .map_err(|e| VerifyError::Log(e.to_string()))?;
        let Some(last) = page.last() else { break };
        after = Some(last.position);
        for event in &page {
            let expected = chain.row(event);
            report.events += 1;
            let mut anchored = false;
            for p in published.iter_mut().filter(|p| !p.done) {
                match p.next().await {
                    Ok(Some(entry)) => {
                        anchored = true;
                        if entry.position != expected.position || entry.hash != expected.hash {
                            report.findings.push(Finding::LogDiffers {
                                sink: p.summary.sink.clone(),
                                seq: expected.seq,
                                published_position: entry.position,
                                log_position: Some(expected.position.clone()),
                            });
                            p.done = true;
                        }
                    }
                    Ok(None) => p.done = true,
                    Err(finding) => {
                        report.findings.push(finding);
                        p.done = true;
                    }
                }
            }
            if !anchored {
                report.unanchored += 1;
            }
            if !rows_done {
                match rows.peek().await? {
                    Some(row) if row.seq == expected.seq => {
                        if let Some(column) = differing_column(&expected, event, row) {
                            report.findings.push(Finding::RowDiffers {
                                seq: row.seq,
                                position: expected.position.clone(),
                                column: column.into(),
                            });
                            rows_done = true;
                        }
                        report.rows += 1;
                        last_row = rows.buffer.pop_front();
                    }
                    Some(_) => {
                        report.findings.push(Finding::RowMissing {
                            seq: expected.seq,
                            position: expected.position.clone(),
                            evidence: "holds later rows".into(),
                        });
                        rows_done = true;
                    }
                    // The projection may simply be behind the log; the checks after the
                    // pass decide whether it should have held more.
                    None => {
                        lacking = Some((expected.seq, expected.position.clone()));
                        rows_done = true;
                    }
                }
            }
            if rows_done && published.iter().all(|p| p.done) && !report.findings.is_empty() {
                break 'log;
            }
        }
    }
    // Published entries beyond the log's end: events removed from its tail.
    for p in published.iter_mut().filter(|p| !p.done) {
        match p.next().await {
            Ok(Some(entry)) => report.findings.push(Finding::LogDiffers {
                sink: p.summary.sink.clone(),
                seq: chain.seq + 1,
                published_position: entry.position,
                log_position: None,
            }),
            Ok(None) => {}
            Err(finding) => report.findings.push(finding),
        }
    }
    let projection_has_finding = report.findings.iter().any(|f| {
        matches!(
            f,
            Finding::RowDiffers { .. }
                | Finding::RowMissing { .. }
                | Finding::RowWithoutEvent { .. }
        )
    });
    if !projection_has_finding {
        let rows_held = last_row.as_ref().map_or(0, |r| r.seq);
        // Rows beyond the log: the log lost events the projection still records.
        if let Some(extra) = rows.peek().await? {
            report.findings.push(Finding::RowWithoutEvent {
                seq: extra.seq,
                position: extra.position.clone(),
            });
        } else {
            // Rows deleted from the end of the table: judged against the newest published
            // checkpoint, and against the projection's own checkpoint row.
            let own = db.checkpoint().await?;
            let newest = published
                .iter()
                .map(|p| (p.summary.newest_seq, p.summary.sink.clone()))
                .max();
            let missing = match newest {
                // Only as far as the log reaches: where the log itself ends early, the
                // finding against the checkpoints already says so.
                Some((seq, sink)) if seq.min(chain.seq) > rows_held.max(own.seq) => {
                    Some((format!("a checkpoint published in {sink} covers"), seq))
                }
                _ if own.seq > rows_held => {
                    Some(("its own checkpoint says it holds".to_string(), own.seq))
                }
                _ => None,
            };
            if let Some((evidence, _)) = missing {
                let seq = rows_held + 1;
                let position = match lacking {
                    Some((lacking_seq, position)) if lacking_seq == seq => position,
                    _ => "unknown (not in the log either)".into(),
                };
                report.findings.push(Finding::RowMissing {
                    seq,
                    position,
                    evidence,
                });
            }
        }
    }
    report.anchors = published.into_iter().map(|p| p.summary).collect();
    report.findings.sort_by_key(Finding::seq);
    Ok(report)
}

/// The sinks a running trail publishes to, each checked with trail's own key.
pub fn anchors_of(trail: &crate::runner::Trail) -> Vec<Anchor> {
    trail.publisher.as_ref().map_or_else(Vec::new, |p| {
        let own = TrustedKey::Own(p.anchoring().key.verifying_key());
        p.anchoring()
            .sinks
            .iter()
            .map(|sink| Anchor {
                sink: sink.clone(),
                key: own.clone(),
            })
            .collect()
    })
}

impl Report {
    /// Neither a projection row nor a published checkpoint was compared: nothing vouched for.
    pub fn nothing_checked(&self) -> bool {
        self.rows == 0 && self.anchors.iter().all(|a| a.checkpoints == 0)
    }

    /// What was checked against what, for a report with no findings.
    pub fn summary(&self) -> String {
        let mut text = format!("{} audit rows match the log", self.rows);
        for a in &self.anchors {
            match (&a.newest_position, &a.key_id) {
                (Some(position), Some(key)) => text.push_str(&format!(
                    "; the log matches {} signed checkpoints in {} through row {} (position {position}), checked with key {key} ({})",
                    a.checkpoints, a.sink, a.newest_seq, a.key_source
                )),
                _ => text.push_str(&format!("; {} holds no checkpoints yet", a.sink)),
            }
        }
        if self.anchors.is_empty() {
            text.push_str("; no published checkpoints to check the log against");
        }
        if self.unanchored > 0 {
            text.push_str(&format!(
                "; the newest {} events are not in a published checkpoint yet (checked against the projection only)",
                self.unanchored
            ));
        }
        text
    }
}
