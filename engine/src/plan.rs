//! What a run of a migration would do, before it runs: each operation with its statements rendered exactly as
//! they will be sent for the given parameters (a recipe's expanded from the tables as they are now), the tables,
//! partitions, rows and bytes they touch, the disk needed against the disk free, and an estimated duration from
//! the copies this instance has measured. Building a plan changes nothing.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::context::MigrationContext;
use crate::definition::{MigrationDefinition, OperationAction};
use crate::preview::{least_free_disk_space, DurationKind, OperationPreview, TableFootprint};
use crate::Result;

/// A migration's operations as a run with given parameters would execute them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub migration: String,
    pub description: String,
    /// The parameter values the plan was rendered with, defaults filled in.
    pub parameters: serde_json::Value,
    pub operations: Vec<PlannedOperation>,
    /// Every table the operations touch, with the most any operation touches of it.
    pub tables: Vec<TableFootprint>,
    /// Bytes the run writes beside what the tables hold now, summed over the operations.
    pub disk_needed: u64,
    /// The least free space of ClickHouse's disks, where the server reports them.
    pub disk_free: Option<u64>,
    /// Bytes on disk the run copies with `INSERT … SELECT`.
    pub copied_bytes: u64,
    /// The bytes per second this instance's newest partition copies achieved, if it has copied any.
    pub measured_bytes_per_second: Option<f64>,
    /// How long the run should take: its copies at that speed, its other operations brief. `None` is unknown:
    /// nothing measured yet while there is something to copy, or an operation whose duration no measure
    /// predicts ([`DurationKind::Unknown`]).
    pub estimated_seconds: Option<f64>,
}

/// One operation of a [`Plan`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedOperation {
    pub description: String,
    #[serde(flatten)]
    pub work: PlannedWork,
    pub tables: Vec<TableFootprint>,
    pub disk_needed: u64,
    pub copied_bytes: u64,
    pub duration: DurationKind,
}

/// What an operation sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlannedWork {
    /// A ClickHouse statement, its rollback (empty when there is nothing to undo) and the settings sent with it.
    Clickhouse { sql: String, rollback: String, settings: Vec<(String, String)> },
    /// A Postgres statement and its rollback.
    Postgres { sql: String, rollback: String },
    /// A recipe: the ClickHouse or Postgres statements it would send as the tables are now, those of its
    /// rollback, and what depends on the run itself.
    Recipe { statements: Vec<String>, rollback: Vec<String>, note: String },
    /// A product's Rust: its statements depend on what it reads as it runs.
    Code,
}

impl Plan {
    /// The plan of `definition` in `context` (its parameters, the product's database), with the copy speed
    /// this instance measured.
    pub(crate) async fn of(
        definition: &MigrationDefinition,
        context: &MigrationContext,
        measured_bytes_per_second: Option<f64>,
    ) -> Result<Plan> {
        let mut operations = Vec::with_capacity(definition.operations.len());
        for operation in &definition.operations {
            let planned = |work, sql: &str| PlannedOperation {
                description: operation.description.clone(),
                work,
                tables: Vec::new(),
                disk_needed: 0,
                copied_bytes: 0,
                duration: DurationKind::of_statement(sql),
            };
            operations.push(match (&operation.action, &operation.preview) {
                (OperationAction::ClickHouse { sql, rollback, settings, .. }, _) => planned(
                    PlannedWork::Clickhouse {
                        sql: definition.render_clickhouse(sql, context)?,
                        rollback: definition.render_clickhouse(rollback, context)?,
                        settings: settings.clone(),
                    },
                    sql,
                ),
                (OperationAction::Postgres { sql, rollback }, _) => planned(
                    PlannedWork::Postgres {
                        sql: definition.render_postgres(sql, context)?,
                        rollback: definition.render_postgres(rollback, context)?,
                    },
                    sql,
                ),
                (OperationAction::Rust { .. }, Some(preview)) => {
                    // A recipe whose tables are not there (yet, or any more) is shown as such, not as a failed plan.
                    let preview = preview(context.clone()).await.unwrap_or_else(|error| OperationPreview {
                        note: format!("cannot be planned now: {error}"),
                        ..OperationPreview::default()
                    });
                    PlannedOperation {
                        description: operation.description.clone(),
                        work: PlannedWork::Recipe { statements: preview.statements, rollback: preview.rollback, note: preview.note },
                        tables: preview.tables,
                        disk_needed: preview.disk_needed,
                        copied_bytes: preview.copied_bytes,
                        duration: preview.duration,
                    }
                }
                (OperationAction::Rust { .. }, None) => planned(PlannedWork::Code, ""),
            });
        }
        let mut tables: BTreeMap<(String, String), TableFootprint> = BTreeMap::new();
        for footprint in operations.iter().flat_map(|operation| &operation.tables) {
            let key = (format!("{:?}", footprint.server), footprint.table.clone());
            let most = tables.entry(key).or_insert_with(|| footprint.clone());
            if (footprint.rows, footprint.bytes) > (most.rows, most.bytes) {
                *most = footprint.clone();
            }
        }
        let copied_bytes = operations.iter().map(|operation| operation.copied_bytes).sum();
        let estimated_seconds = if operations.iter().any(|operation| operation.duration == DurationKind::Unknown) {
            None
        } else if copied_bytes == 0 {
            Some(0.0)
        } else {
            measured_bytes_per_second.map(|speed| copied_bytes as f64 / speed)
        };
        Ok(Plan {
            migration: definition.name.clone(),
            description: definition.description.clone(),
            parameters: context.parameters.to_json(),
            tables: tables.into_values().collect(),
            disk_needed: operations.iter().map(|operation| operation.disk_needed).sum(),
            disk_free: least_free_disk_space(&context.clickhouse).await?,
            copied_bytes,
            measured_bytes_per_second,
            estimated_seconds,
            operations,
        })
    }
}

impl Plan {
    /// The disk figures in words: `needs 1.2 GiB; 40.0 GiB free`.
    pub fn disk_text(&self) -> String {
        let needed = format!("needs {}", bytes_text(self.disk_needed));
        match self.disk_free {
            Some(free) if free < self.disk_needed => format!("{needed}; only {} free", bytes_text(free)),
            Some(free) => format!("{needed}; {} free", bytes_text(free)),
            None => format!("{needed}; this ClickHouse does not report its free space (system.disks came in 19.15)"),
        }
    }

    /// The estimate in words: `about 4 min (copies 1.2 GiB at 40.0 MiB/s, measured)`, or why it is unknown.
    pub fn duration_text(&self) -> String {
        let about = |seconds: f64| match duration_text(seconds) {
            brief if seconds < 0.5 => brief,
            text => format!("about {text}"),
        };
        match (self.estimated_seconds, self.measured_bytes_per_second) {
            (Some(seconds), Some(speed)) if self.copied_bytes > 0 => format!(
                "{} (copies {} at {}/s, as this instance's copies have measured)",
                about(seconds),
                bytes_text(self.copied_bytes),
                bytes_text(speed as u64)
            ),
            (Some(seconds), _) => about(seconds),
            (None, _) if self.operations.iter().any(|operation| operation.duration == DurationKind::Unknown) => {
                "unknown: an operation takes a time no copy measure predicts (a mutation, Postgres batches, code)".into()
            }
            (None, _) => {
                format!("unknown: this instance has not copied a partition yet, and this run copies {}", bytes_text(self.copied_bytes))
            }
        }
    }
}

/// A byte count for people: `512 B`, `3.4 MiB`, `1.2 GiB`.
pub fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration for people, to the unit that matters: `under a second`, `40 s`, `12 min`, `3 h 20 min`, `2 d 4 h`.
pub fn duration_text(seconds: f64) -> String {
    let seconds = seconds.round() as u64;
    match seconds {
        0 => "under a second".into(),
        1..=119 => format!("{seconds} s"),
        120..=7199 => format!("{} min", seconds / 60),
        7200..=172_799 => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{} d {} h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::{bytes_text, duration_text};

    #[test]
    fn sizes_and_durations_read_in_the_unit_that_matters() {
        assert_eq!(bytes_text(0), "0 B");
        assert_eq!(bytes_text(1023), "1023 B");
        assert_eq!(bytes_text(1536), "1.5 KiB");
        assert_eq!(bytes_text(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(duration_text(0.2), "under a second");
        assert_eq!(duration_text(40.0), "40 s");
        assert_eq!(duration_text(720.0), "12 min");
        assert_eq!(duration_text(12_000.0), "3 h 20 min");
        assert_eq!(duration_text(187_200.0), "2 d 4 h");
    }
}
