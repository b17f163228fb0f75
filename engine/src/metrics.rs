//! What `/metrics` reports, read from Postgres in one go and written in Prometheus' text format: migrations by
//! status, each migration's phase, progress, errors, the latest duration of each operation, rows copied, and
//! the age of each runner's last heartbeat.

use std::fmt::Write;

use sqlx::Row;

use crate::status::{Phase, Status};
use crate::store::Store;
use crate::Result;

/// A reading of every metric at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    pub migrations: Vec<MigrationMetrics>,
    pub operations: Vec<OperationMetrics>,
    pub leases: Vec<LeaseMetrics>,
}

/// One migration's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationMetrics {
    pub name: String,
    pub status: Status,
    pub progress: i16,
    pub errors: i64,
    /// Rows its operations reported copying in the current or last run; `None` when none counts rows.
    pub rows_copied: Option<i64>,
    /// What staff see it doing, as the page and `list` show it ([`crate::Engine::metrics`] sets it).
    pub phase: Phase,
}

/// The latest finished attempt at one operation.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationMetrics {
    pub migration: String,
    pub operation_index: i32,
    pub duration_seconds: f64,
}

/// One runner's lease on the migration it executes.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseMetrics {
    pub runner_id: String,
    pub migration: String,
    /// Seconds since its last heartbeat.
    pub heartbeat_age_seconds: f64,
}

impl MetricsSnapshot {
    /// Reads every figure in one repeatable-read transaction, so that they agree with each other.
    pub async fn read(store: &Store) -> Result<MetricsSnapshot> {
        let mut transaction = store.pool().begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *transaction).await?;
        let migration_rows = sqlx::query(
            "SELECT m.name, m.status, m.progress,
                    (SELECT count(*) FROM async_migration_error e WHERE e.migration_name = m.name) AS errors,
                    (SELECT sum(o.rows_copied)::bigint FROM async_migration_operation o WHERE o.migration_name = m.name) AS rows_copied
             FROM async_migration m ORDER BY m.name",
        )
        .fetch_all(&mut *transaction)
        .await?;
        let mut migrations = Vec::with_capacity(migration_rows.len());
        for row in &migration_rows {
            let status: String = row.try_get("status")?;
            migrations.push(MigrationMetrics {
                name: row.try_get("name")?,
                status: Status::parse(&status).ok_or_else(|| crate::Error::Corrupt(format!("unknown status {status:?}")))?,
                progress: row.try_get("progress")?,
                errors: row.try_get("errors")?,
                rows_copied: row.try_get("rows_copied")?,
                phase: Phase::default(),
            });
        }
        let operations = sqlx::query(
            "SELECT migration_name, operation_index, extract(epoch FROM finished_at - started_at)::float8
             FROM async_migration_operation WHERE finished_at IS NOT NULL ORDER BY migration_name, operation_index",
        )
        .fetch_all(&mut *transaction)
        .await?
        .iter()
        .map(|row| Ok(OperationMetrics { migration: row.try_get(0)?, operation_index: row.try_get(1)?, duration_seconds: row.try_get(2)? }))
        .collect::<Result<_>>()?;
        let leases = sqlx::query(
            "SELECT runner_id, migration_name, extract(epoch FROM now() - heartbeat_at)::float8
             FROM runner_lease ORDER BY runner_id, migration_name",
        )
        .fetch_all(&mut *transaction)
        .await?
        .iter()
        .map(|row| Ok(LeaseMetrics { runner_id: row.try_get(0)?, migration: row.try_get(1)?, heartbeat_age_seconds: row.try_get(2)? }))
        .collect::<Result<_>>()?;
        transaction.commit().await?;
        Ok(MetricsSnapshot { migrations, operations, leases })
    }

    /// The snapshot in Prometheus' text exposition format (version 0.0.4).
    pub fn to_prometheus_text(&self) -> String {
        let mut text = String::new();
        header(&mut text, "amigo_migrations", "gauge", "Migrations in each status.");
        for status in Status::ALL {
            let count = self.migrations.iter().filter(|migration| migration.status == status).count();
            sample(&mut text, "amigo_migrations", &[("status", status.as_str())], count as f64);
        }
        header(&mut text, "amigo_migration_status", "gauge", "1 for the status each migration is in.");
        for migration in &self.migrations {
            sample(&mut text, "amigo_migration_status", &[("migration", &migration.name), ("status", migration.status.as_str())], 1.0);
        }
        header(&mut text, "amigo_migration_phase", "gauge", "1 for the phase each migration is in, as the staff page shows it.");
        for migration in &self.migrations {
            sample(&mut text, "amigo_migration_phase", &[("migration", &migration.name), ("phase", migration.phase.as_str())], 1.0);
        }
        header(&mut text, "amigo_migration_progress_percent", "gauge", "How far each migration's current or last run got, 0 to 100.");
        for migration in &self.migrations {
            sample(&mut text, "amigo_migration_progress_percent", &[("migration", &migration.name)], f64::from(migration.progress));
        }
        header(&mut text, "amigo_migration_errors_total", "counter", "Errors recorded in each migration's error log.");
        for migration in &self.migrations {
            sample(&mut text, "amigo_migration_errors_total", &[("migration", &migration.name)], migration.errors as f64);
        }
        header(
            &mut text,
            "amigo_migration_rows_copied",
            "gauge",
            "Rows copied by each migration's current or last run, for migrations whose operations count them.",
        );
        for migration in &self.migrations {
            if let Some(rows) = migration.rows_copied {
                sample(&mut text, "amigo_migration_rows_copied", &[("migration", &migration.name)], rows as f64);
            }
        }
        header(&mut text, "amigo_operation_duration_seconds", "gauge", "How long the latest finished attempt at each operation took.");
        for operation in &self.operations {
            let index = operation.operation_index.to_string();
            sample(
                &mut text,
                "amigo_operation_duration_seconds",
                &[("migration", &operation.migration), ("operation", &index)],
                operation.duration_seconds,
            );
        }
        header(
            &mut text,
            "amigo_runner_heartbeat_age_seconds",
            "gauge",
            "Seconds since each runner last renewed its lease on the migration it runs.",
        );
        for lease in &self.leases {
            sample(
                &mut text,
                "amigo_runner_heartbeat_age_seconds",
                &[("runner", &lease.runner_id), ("migration", &lease.migration)],
                lease.heartbeat_age_seconds,
            );
        }
        text
    }
}

fn header(text: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(text: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    let labels: Vec<String> = labels.iter().map(|(label, value)| format!("{label}=\"{}\"", escape_label_value(value))).collect();
    let _ = writeln!(text, "{name}{{{}}} {value}", labels.join(","));
}

/// A label value as the text format wants it: backslash, double quote and line feed escaped.
fn escape_label_value(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_cannot_break_out_of_their_quotes() {
        let mut text = String::new();
        sample(&mut text, "amigo_x", &[("migration", "a\"b\\c\nd")], 1.5);
        assert_eq!(text, "amigo_x{migration=\"a\\\"b\\\\c\\nd\"} 1.5\n");
    }
}
