//! What the server functions and the event stream send to the browser: plain serde types, no server
//! dependencies. The conversions from the engine's types sit behind the `ssr` feature at the bottom.

use serde::{Deserialize, Serialize};

/// Milliseconds since 1970-01-01 00:00 UTC.
pub type UnixMillis = i64;

pub use amigo_state::{Action, ParameterKind, Phase, Status};

/// A parameter a migration takes, as the Run form shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterField {
    pub name: String,
    pub description: String,
    pub kind: ParameterKind,
    /// The default, as it would be typed into the form.
    pub default_value: String,
    /// Staff may change it while the migration runs (Adjust).
    pub adjustable: bool,
    /// The value of the latest run, as it would be typed; `None` before any run.
    pub run_value: Option<String>,
}

/// One row of the migrations table: a migration's recorded state with what its definition says about it,
/// and what staff may do with it now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationRow {
    pub name: String,
    pub description: String,
    pub status: Status,
    /// What it is doing, as the engine's state machine decides it: the badge.
    pub phase: Phase,
    /// Who asked to stop it, while the runner has not acted on it yet.
    pub stop_requested_by: Option<String>,
    /// Who paused it, while the pause stands.
    pub pause_requested_by: Option<String>,
    /// Whole seconds since its runner's last heartbeat, while a runner holds it.
    pub heartbeat_age_seconds: Option<u64>,
    /// Why staff last moved it by hand (marked errored or completed), until its next run.
    pub status_note: Option<String>,
    /// Since when a run that holds its cut-over is ready for it.
    pub cutover_ready_since: Option<UnixMillis>,
    /// The backup a completed run keeps of what it replaced, until rolled back or finalized.
    pub backup: Option<BackupView>,
    /// Percent, 0 to 100.
    pub progress: u8,
    pub current_operation_index: u32,
    pub operation_count: u32,
    /// The short description of the current operation.
    pub current_operation: Option<String>,
    /// The ClickHouse query running now, if any.
    pub current_query_id: Option<String>,
    pub started_at: Option<UnixMillis>,
    pub finished_at: Option<UnixMillis>,
    pub updated_at: UnixMillis,
    /// Why the runner is pausing, when it is.
    pub waiting_reason: Option<String>,
    pub min_version: String,
    pub max_version: String,
    pub parameters: Vec<ParameterField>,
    /// Only what the phase allows now, in menu order, as the engine decides it.
    pub allowed_actions: Vec<Action>,
    /// On a ClickHouse cluster, each shard of the latest operation that ran shard by shard.
    pub shards: Vec<ShardRow>,
}

/// A backup a completed migration keeps: what Finalize drops, and what rolling it back restores.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupView {
    pub table: String,
    pub since: Option<UnixMillis>,
    /// Its size on disk when it was made, in words (`1.2 GiB`).
    pub size: String,
}

/// Where one shard of a cluster is in an operation that runs on every shard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRow {
    pub shard: u32,
    pub operation_index: u32,
    /// `host:port` of the replica its statements run on.
    pub node: String,
    /// Percent of its part of the operation, 0 to 100.
    pub progress: u8,
    /// Its ClickHouse query running now, if any.
    pub current_query_id: Option<String>,
    /// What the shard's other replicas said at the latest reading (every 5 s while the shard's work runs).
    pub replicas: Vec<ReplicaRow>,
}

/// One of a shard's other replicas: whether it answers, and how far behind the shard's work it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRow {
    /// `host:port`.
    pub node: String,
    /// False when it did not answer within 2 s; the other fields are then zero.
    pub answering: bool,
    /// Its replicated tables that cannot be written now (no ZooKeeper session).
    pub readonly_tables: u64,
    /// How far behind the freshest replica it is, in seconds.
    pub lag_seconds: u64,
    /// Replication tasks waiting in its queue.
    pub queue_size: u64,
}

/// One entry of a migration's error log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEntry {
    pub occurred_at: UnixMillis,
    pub operation_index: Option<i32>,
    /// The description of that operation.
    pub operation: Option<String>,
    pub query_id: Option<String>,
    pub message: String,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRow {
    pub occurred_at: UnixMillis,
    pub actor: String,
    pub action: String,
    pub migration_name: Option<String>,
    /// The parameters or values of the action as compact JSON, empty when there were none.
    pub details: String,
}

/// A runtime setting's value and what it may be. Tagged the way serde tags by default (`{"boolean": {"value": true}}`):
/// reading an internally tagged enum makes serde buffer the input first, and that reader cost the browser's WASM
/// 4 KB brotli with [`ParameterKind`]'s (bench/README.md, page weight).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingValue {
    Boolean {
        value: bool,
    },
    WholeNumber {
        value: u64,
        min: u64,
        max: u64,
        unit: String,
    },
    /// An http(s) address, empty for none.
    Url {
        value: String,
    },
}

/// One notification and how its delivery went, as the settings tab lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRow {
    pub id: i64,
    pub occurred_at: UnixMillis,
    /// The message as the webhook received it.
    pub text: String,
    /// `delivered`, `retrying`, `queued` or `given up`.
    pub state: String,
    pub attempts: i32,
    pub last_outcome: Option<String>,
}

/// One runtime setting as the settings tab shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingRow {
    pub key: String,
    pub label: String,
    pub description: String,
    pub value: SettingValue,
}

/// A migration that must complete before the upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingMigration {
    pub name: String,
    pub min_version: String,
    pub max_version: String,
    pub status: Status,
}

/// Whether this instance's version may run: the migrations still blocking it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeStatus {
    pub target_version: String,
    pub pending: Vec<PendingMigration>,
}

/// Who is logged in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedInUser {
    pub email: String,
    pub is_staff: bool,
}

/// A plan as the page shows it: each operation with what it sends, then what it touches, the disk and the
/// duration in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanView {
    /// The parameter values it was made with, as compact JSON.
    pub parameters: String,
    pub operations: Vec<PlannedOperationView>,
    /// One line per table: `events: 12 partitions, 1000000 rows, 40.1 MiB`.
    pub tables: Vec<String>,
    pub disk: String,
    /// True when the disk free is less than the run needs.
    pub disk_short: bool,
    pub duration: String,
}

/// One operation of a [`PlanView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedOperationView {
    pub description: String,
    /// `ClickHouse`, `Postgres`, `recipe` or `code`.
    pub kind: String,
    pub statements: Vec<String>,
    pub rollback: Vec<String>,
    /// What depends on the run itself; empty when nothing does.
    pub note: String,
}

/// The detail view of one migration: its plan, the partitions its operations work through, its attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationDetails {
    pub plan: Result<PlanView, String>,
    pub partitions: Vec<PartitionGroup>,
    pub attempts: Vec<AttemptRow>,
}

/// The partitions one operation works through on one shard (0 off a cluster).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionGroup {
    pub operation: String,
    pub shard: i32,
    pub partitions: Vec<PartitionRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRow {
    pub partition_id: String,
    pub rows: i64,
    pub size: String,
    /// How long it took, once done.
    pub took_millis: Option<i64>,
}

/// One run a runner took up, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRow {
    /// `start`, `resume` or `rollback`.
    pub action: String,
    pub requested_by: String,
    pub started_at: UnixMillis,
    pub finished_at: Option<UnixMillis>,
    /// The status it ended in; `None` while it runs.
    pub outcome: Option<String>,
    /// Operations, 1-based, where it began and where it ended.
    pub from_operation: i32,
    pub at_operation: Option<i32>,
}

#[cfg(feature = "ssr")]
mod from_engine {
    use engine::parameters::ParameterValue;
    use engine::settings::{RuntimeSettings, SettingKind, SETTINGS};

    use super::*;

    impl From<engine::record::ShardPosition> for ShardRow {
        fn from(position: engine::record::ShardPosition) -> Self {
            ShardRow {
                shard: position.shard.max(0) as u32,
                operation_index: position.operation_index.max(0) as u32,
                node: position.node,
                progress: position.progress.clamp(0, 100) as u8,
                current_query_id: Some(position.current_query_id).filter(|id| !id.is_empty()),
                replicas: position.replicas.into_iter().map(ReplicaRow::from).collect(),
            }
        }
    }

    impl From<engine::cluster::ReplicaState> for ReplicaRow {
        fn from(state: engine::cluster::ReplicaState) -> Self {
            ReplicaRow {
                node: state.node,
                answering: state.answering,
                readonly_tables: state.readonly_tables,
                lag_seconds: state.lag_seconds,
                queue_size: state.queue_size,
            }
        }
    }

    impl From<engine::MigrationOverview> for MigrationRow {
        fn from(overview: engine::MigrationOverview) -> Self {
            let record = overview.record;
            MigrationRow {
                allowed_actions: overview.allowed_actions,
                status: record.status,
                phase: overview.phase,
                stop_requested_by: record.stop_requested_by,
                pause_requested_by: record.pause_requested_by,
                heartbeat_age_seconds: record.heartbeat_age_seconds.map(|age| age.max(0.0) as u64),
                status_note: record.status_note,
                cutover_ready_since: record.cutover_ready_since.map(|at| at.timestamp_millis()),
                backup: record.backup_table.clone().map(|table| BackupView {
                    table,
                    since: record.backup_since.map(|at| at.timestamp_millis()),
                    size: engine::plan::bytes_text(record.backup_bytes.unwrap_or_default().max(0) as u64),
                }),
                progress: record.progress.clamp(0, 100) as u8,
                current_operation_index: record.current_operation_index.max(0) as u32,
                operation_count: overview.operation_count as u32,
                current_operation: overview.current_operation,
                current_query_id: Some(record.current_query_id).filter(|id| !id.is_empty()),
                started_at: record.started_at.map(|at| at.timestamp_millis()),
                finished_at: record.finished_at.map(|at| at.timestamp_millis()),
                updated_at: record.updated_at.timestamp_millis(),
                waiting_reason: record.waiting_reason,
                min_version: record.min_version,
                max_version: record.max_version,
                parameters: overview
                    .parameter_specs
                    .into_iter()
                    .map(|spec| {
                        let run_value =
                            record.parameters.get(&spec.name).and_then(|json| spec.from_json(json).ok()).map(|value| value.to_string());
                        ParameterField { run_value, ..ParameterField::from(spec) }
                    })
                    .collect(),
                shards: record.shards.into_iter().map(ShardRow::from).collect(),
                name: record.name,
                description: record.description,
            }
        }
    }

    impl From<engine::parameters::ParameterSpec> for ParameterField {
        fn from(spec: engine::parameters::ParameterSpec) -> Self {
            ParameterField {
                kind: spec.kind,
                adjustable: spec.adjustable,
                run_value: None,
                default_value: match spec.default {
                    ParameterValue::Integer(number) => number.to_string(),
                    ParameterValue::Boolean(flag) => flag.to_string(),
                    ParameterValue::Text(text) => text,
                },
                name: spec.name,
                description: spec.description,
            }
        }
    }

    impl ErrorEntry {
        /// An error with the description of the operation it happened in, when the definition has it.
        pub fn from_engine(error: engine::record::MigrationError, definition: Option<&engine::definition::MigrationDefinition>) -> Self {
            let operation = error
                .operation_index
                .and_then(|index| definition?.operations.get(usize::try_from(index).ok()?))
                .map(|operation| operation.description.clone());
            ErrorEntry {
                occurred_at: error.occurred_at.timestamp_millis(),
                operation_index: error.operation_index,
                operation,
                query_id: error.query_id,
                message: error.message,
            }
        }
    }

    impl From<engine::plan::Plan> for PlanView {
        fn from(plan: engine::plan::Plan) -> Self {
            use engine::plan::{bytes_text, PlannedWork};
            let operations = plan
                .operations
                .iter()
                .map(|operation| {
                    let (kind, statements, rollback, note) = match &operation.work {
                        PlannedWork::Clickhouse { sql, rollback, .. } => {
                            ("ClickHouse", vec![sql.clone()], vec![rollback.clone()], String::new())
                        }
                        PlannedWork::Postgres { sql, rollback } => ("Postgres", vec![sql.clone()], vec![rollback.clone()], String::new()),
                        PlannedWork::Recipe { statements, rollback, note } => {
                            ("recipe", statements.clone(), rollback.clone(), note.clone())
                        }
                        PlannedWork::Code => ("code", Vec::new(), Vec::new(), "its statements depend on what it reads as it runs".into()),
                    };
                    let rollback = rollback.into_iter().filter(|sql| !sql.trim().is_empty()).collect();
                    PlannedOperationView { description: operation.description.clone(), kind: kind.into(), statements, rollback, note }
                })
                .collect();
            let tables = plan
                .tables
                .iter()
                .map(|table| {
                    let partitions = if table.partitions > 0 { format!("{} partitions, ", table.partitions) } else { String::new() };
                    format!("{}: {partitions}{} rows, {}", table.table, table.rows, bytes_text(table.bytes))
                })
                .collect();
            PlanView {
                parameters: plan.parameters.to_string(),
                operations,
                tables,
                disk: plan.disk_text(),
                disk_short: plan.disk_free.is_some_and(|free| free < plan.disk_needed),
                duration: plan.duration_text(),
            }
        }
    }

    impl MigrationDetails {
        /// The detail view of `detail`, its operations described by `definition`.
        pub fn from_engine(detail: engine::MigrationDetail, definition: Option<&engine::definition::MigrationDefinition>) -> Self {
            let describe = |index: i32| {
                let description =
                    usize::try_from(index).ok().and_then(|index| Some(definition?.operations.get(index)?.description.clone()));
                format!("{} · {}", index + 1, description.unwrap_or_default())
            };
            let mut partitions: Vec<PartitionGroup> = Vec::new();
            for partition in detail.partitions {
                let row = PartitionRow {
                    partition_id: partition.partition_id,
                    rows: partition.rows,
                    size: engine::plan::bytes_text(u64::try_from(partition.bytes).unwrap_or_default()),
                    took_millis: partition.done_at.map(|_| (partition.seconds.unwrap_or_default() * 1000.0).round() as i64),
                };
                let operation = describe(partition.operation_index);
                match partitions.last_mut() {
                    Some(group) if group.operation == operation && group.shard == partition.shard => group.partitions.push(row),
                    _ => partitions.push(PartitionGroup { operation, shard: partition.shard, partitions: vec![row] }),
                }
            }
            MigrationDetails {
                plan: detail.plan.map(PlanView::from),
                partitions,
                attempts: detail
                    .attempts
                    .into_iter()
                    .map(|attempt| AttemptRow {
                        action: attempt.action,
                        requested_by: attempt.requested_by,
                        started_at: attempt.started_at.timestamp_millis(),
                        finished_at: attempt.finished_at.map(|at| at.timestamp_millis()),
                        outcome: attempt.outcome,
                        from_operation: attempt.from_operation + 1,
                        at_operation: attempt.at_operation.map(|index| index + 1),
                    })
                    .collect(),
            }
        }
    }

    impl From<engine::notifications::Notification> for NotificationRow {
        fn from(notification: engine::notifications::Notification) -> Self {
            NotificationRow {
                id: notification.id,
                occurred_at: notification.occurred_at.timestamp_millis(),
                text: notification.text(),
                state: notification.delivery_state().into(),
                attempts: notification.attempts,
                last_outcome: notification.last_outcome,
            }
        }
    }

    impl From<engine::record::AuditEntry> for AuditRow {
        fn from(entry: engine::record::AuditEntry) -> Self {
            let empty = entry.parameters.is_null() || entry.parameters.as_object().is_some_and(|object| object.is_empty());
            AuditRow {
                occurred_at: entry.occurred_at.timestamp_millis(),
                actor: entry.actor,
                action: entry.action,
                migration_name: entry.migration_name,
                details: if empty { String::new() } else { entry.parameters.to_string() },
            }
        }
    }

    impl SettingRow {
        /// Every setting in the engine's order (auto-run first) with its value in `settings`.
        pub fn all(settings: &RuntimeSettings) -> Vec<SettingRow> {
            SETTINGS
                .iter()
                .map(|spec| {
                    let current = settings.value(spec.key).unwrap_or_default();
                    SettingRow {
                        key: spec.key.into(),
                        label: spec.label.into(),
                        description: spec.description.into(),
                        value: match spec.kind {
                            SettingKind::Boolean => SettingValue::Boolean { value: current.as_bool().unwrap_or_default() },
                            SettingKind::WholeNumber { min, max, unit } => {
                                SettingValue::WholeNumber { value: current.as_u64().unwrap_or_default(), min, max, unit: unit.into() }
                            }
                            SettingKind::Url => SettingValue::Url { value: current.as_str().unwrap_or_default().into() },
                        },
                    }
                })
                .collect()
        }
    }

    impl UpgradeStatus {
        /// The gate's answer, with each pending migration's status from `records`.
        pub fn from_check(check: engine::upgrade::UpgradeCheck, rows: &[MigrationRow]) -> Self {
            UpgradeStatus {
                target_version: check.target.to_string(),
                pending: check
                    .pending
                    .into_iter()
                    .map(|pending| PendingMigration {
                        status: rows.iter().find(|row| row.name == pending.name).map_or(Status::NotStarted, |row| row.status),
                        name: pending.name,
                        min_version: pending.min_version,
                        max_version: pending.max_version,
                    })
                    .collect(),
            }
        }
    }

    impl From<&engine::accounts::User> for LoggedInUser {
        fn from(user: &engine::accounts::User) -> Self {
            LoggedInUser { email: user.email.clone(), is_staff: user.is_staff }
        }
    }
}
