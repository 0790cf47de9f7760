//! The JSON bodies trail's API answers with. Each derives `ToSchema`, so the OpenAPI document
//! is generated from the same types the handlers serialize.

use chrono::{DateTime, Utc};
use ionroller_projections::audit::AuditRow;
use ionroller_projections::releases::Release;
use ionroller_projections::timeline::Share;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::verify::{AnchorSummary, Finding};

/// `GET /v1/audit`: a page of rows.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub rows: Vec<AuditRow>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// One service in `GET /v1/services`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ServiceSummary {
    pub service: String,
    /// The current traffic split; `null` before any traffic was seen.
    pub traffic: Option<Vec<Share>>,
    pub last_release: Option<Release>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ServiceList {
    pub services: Vec<ServiceSummary>,
}

/// `GET /v1/services/{service}/releases`: every rollout, oldest first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ReleaseList {
    pub service: String,
    pub releases: Vec<Release>,
}

/// `GET /v1/services/{service}/at`: what ran at a time.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AtTime {
    pub service: String,
    pub time: DateTime<Utc>,
    /// `null` when nothing was known to run then.
    pub traffic: Option<Vec<Share>>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub rollout_in_progress: Option<Release>,
}

/// `GET /v1/verify`: the projection checked against the log, and the log against the
/// published signed checkpoints.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Verification {
    pub ok: bool,
    /// The audit rows compared with the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// When not `ok`: the row (its place in log order, from 1) of the first finding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_mismatch: Option<u64>,
    /// When not `ok`: the log position the first finding names, when it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_mismatch_position: Option<String>,
    /// Every finding, one sentence each; or, when `ok`, what was checked against what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Events read from the log.
    #[serde(default)]
    pub events: u64,
    /// Events newer than every published checkpoint (checked against the projection only).
    #[serde(default)]
    pub unanchored: u64,
    /// What each place checkpoints are published held.
    #[serde(default)]
    pub anchors: Vec<AnchorSummary>,
    #[serde(default)]
    pub findings: Vec<Finding>,
}

/// A point of the hash chain.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ChainPoint {
    /// The audit row's seq (0 before any row).
    pub seq: u64,
    /// The log position of that row's event, as a token; `null` before any row.
    pub position: Option<String>,
    /// The chain hash after that row, hex.
    pub head: String,
}

/// `GET /v1/chain`: the head and the periodic checkpoints, for keeping a copy outside trail.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Chain {
    pub head: ChainPoint,
    /// A checkpoint is kept every this many rows.
    pub every: u64,
    pub checkpoints: Vec<ChainPoint>,
}
