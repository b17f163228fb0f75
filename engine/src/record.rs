//! The read models of migration state: what the store returns and the engine, the page and the CLI show.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cluster::ReplicaState;
use crate::status::{Observed, Phase, Status};

/// One migration's recorded state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MigrationRecord {
    pub name: String,
    pub description: String,
    pub status: Status,
    pub progress: i16,
    pub current_operation_index: i32,
    pub current_query_id: String,
    pub runner_id: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub min_version: String,
    pub max_version: String,
    pub parameters: serde_json::Value,
    pub checkpoint: Option<serde_json::Value>,
    pub requested_action: Option<String>,
    pub requested_by: Option<String>,
    pub rolling_back: bool,
    pub stop_requested_by: Option<String>,
    pub stop_and_rollback: bool,
    pub waiting_reason: Option<String>,
    /// Who asked to pause it, until someone asks to continue.
    pub pause_requested_by: Option<String>,
    /// Since when its runner holds it between two units of work, for the pause.
    pub held_since: Option<DateTime<Utc>>,
    /// Seconds since its runner's last heartbeat, while a runner holds its lease.
    pub heartbeat_age_seconds: Option<f64>,
    /// Why staff moved it by hand (marked errored or completed), who and when, until its next run.
    pub status_note: Option<String>,
    /// Since when a run that holds its cut-over is ready for it (copied, caught up, still copying new inserts).
    pub cutover_ready_since: Option<DateTime<Utc>>,
    /// Who let it cut over, until its runner does.
    pub cutover_approved_by: Option<String>,
    /// The backup its run kept of what it replaced (a rewrite's original table), until a rollback or Finalize.
    pub backup_table: Option<String>,
    pub backup_since: Option<DateTime<Utc>>,
    /// The backup's size on disk when it was made (on the node amigo connects to).
    pub backup_bytes: Option<i64>,
    /// Staff skip the precheck and health checks for this run (the reason is its `status_note`).
    pub checks_skipped: bool,
    pub updated_at: DateTime<Utc>,
    /// On a ClickHouse cluster, where each shard is in the latest operation that ran shard by shard.
    pub shards: Vec<ShardPosition>,
}

impl MigrationRecord {
    /// What the state machine decides this migration's phase and allowed actions from; its runner is silent
    /// when its heartbeat is older than `lease_timeout`.
    pub fn observed(&self, lease_timeout: std::time::Duration) -> Observed {
        Observed {
            runner_silent: self.heartbeat_age_seconds.is_some_and(|age| age > lease_timeout.as_secs_f64()),
            status: self.status,
            rolling_back: self.rolling_back,
            stop_requested: self.stop_requested_by.is_some(),
            pause_requested: self.pause_requested_by.is_some(),
            held: self.held_since.is_some(),
            waiting: self.waiting_reason.is_some(),
            claimed: self.runner_id.is_some(),
            cutover_ready: self.cutover_ready_since.is_some() && self.cutover_approved_by.is_none(),
            backup_kept: self.backup_table.is_some(),
        }
    }

    pub fn phase(&self, lease_timeout: std::time::Duration) -> Phase {
        Phase::of(self.observed(lease_timeout))
    }
}

/// Where one shard is in an operation that runs on every shard of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ShardPosition {
    pub shard: i32,
    pub operation_index: i32,
    /// `host:port` of the replica the shard's statements run on.
    pub node: String,
    pub progress: i16,
    pub current_query_id: String,
    /// What the shard's other replicas said at the latest reading (every 5 s while the shard's work runs).
    #[serde(default)]
    pub replicas: Vec<ReplicaState>,
}

/// What the store records of a defined migration: the migration's name, description and amigo version range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub name: String,
    pub description: String,
    pub min_version: String,
    pub max_version: String,
}

/// One entry of a migration's error log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationError {
    pub occurred_at: DateTime<Utc>,
    pub operation_index: Option<i32>,
    pub query_id: Option<String>,
    pub message: String,
}

/// One run of a migration a runner took up: a start, a resume or a rollback, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    /// `start`, `resume` or `rollback`.
    pub action: String,
    pub requested_by: String,
    pub parameters: Option<serde_json::Value>,
    /// The operation it began at (0-based).
    pub from_operation: i32,
    pub started_at: DateTime<Utc>,
    /// `None` while it runs.
    pub finished_at: Option<DateTime<Utc>>,
    /// The status it ended in, and the operation it was at then.
    pub outcome: Option<String>,
    pub at_operation: Option<i32>,
}

/// One partition an operation works through, and whether it is done.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionProgress {
    pub operation_index: i32,
    /// 0 off a cluster.
    pub shard: i32,
    pub partition_id: String,
    pub rows: i64,
    pub bytes: i64,
    pub done_at: Option<DateTime<Utc>>,
    /// How long it took.
    pub seconds: Option<f64>,
}

/// One entry of the audit log: who did what, when, with which parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub migration_name: Option<String>,
    pub parameters: serde_json::Value,
}

/// A lease whose runner stopped sending heartbeats.
#[derive(Debug, Clone)]
pub struct StaleLease {
    pub migration_name: String,
    pub runner_id: String,
}
