//! The Postgres side: the connection pool, the embedded schema, and every read and write of migration state.
//!
//! Status changes are written with the expected old status in the `WHERE` clause: a change that lost a race
//! updates no row and is reported as [`Error::ChangedMeanwhile`].

use std::collections::BTreeSet;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::Row;

use crate::cluster::ReplicaState;
use crate::preview::PartitionSize;
use crate::record::{Attempt, AuditEntry, MigrationError, MigrationRecord, PartitionProgress, Registration, StaleLease};
use crate::status::{check_move, Status};
use crate::{Error, Result};

/// How many of the newest partition copies [`Store::copy_throughput`] reads.
const COPY_SAMPLES_READ: i64 = 50;

/// The columns of `async_migration` every read selects.
const MIGRATION_COLUMNS: &str = "name, description, status, progress, current_operation_index, current_query_id, \
     runner_id, started_at, finished_at, min_version, max_version, parameters, checkpoint, requested_action, \
     requested_by, rolling_back, stop_requested_by, stop_and_rollback, waiting_reason, pause_requested_by, held_since, status_note, \
     cutover_ready_since, cutover_approved_by, backup_table, backup_since, backup_bytes, checks_skipped, \
     updated_at, (SELECT extract(epoch FROM now() - heartbeat_at)::float8 FROM runner_lease \
      WHERE migration_name = async_migration.name) AS heartbeat_age_seconds, \
     (SELECT coalesce(jsonb_agg(jsonb_build_object('shard', shard, 'operation_index', operation_index, 'node', node, \
         'progress', progress, 'current_query_id', current_query_id, 'replicas', replicas) ORDER BY shard), '[]'::jsonb) \
      FROM async_migration_shard WHERE migration_name = async_migration.name) AS shards";

/// A row of `async_migration` read with [`MIGRATION_COLUMNS`].
fn record_from_row(row: &PgRow) -> Result<MigrationRecord> {
    let status_text: String = row.try_get("status")?;
    let status = Status::parse(&status_text).ok_or_else(|| Error::Corrupt(format!("unknown status {status_text:?}")))?;
    Ok(MigrationRecord {
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        status,
        progress: row.try_get("progress")?,
        current_operation_index: row.try_get("current_operation_index")?,
        current_query_id: row.try_get("current_query_id")?,
        runner_id: row.try_get("runner_id")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        min_version: row.try_get("min_version")?,
        max_version: row.try_get("max_version")?,
        parameters: row.try_get("parameters")?,
        checkpoint: row.try_get("checkpoint")?,
        requested_action: row.try_get("requested_action")?,
        requested_by: row.try_get("requested_by")?,
        rolling_back: row.try_get("rolling_back")?,
        stop_requested_by: row.try_get("stop_requested_by")?,
        stop_and_rollback: row.try_get("stop_and_rollback")?,
        waiting_reason: row.try_get("waiting_reason")?,
        pause_requested_by: row.try_get("pause_requested_by")?,
        held_since: row.try_get("held_since")?,
        status_note: row.try_get("status_note")?,
        cutover_ready_since: row.try_get("cutover_ready_since")?,
        cutover_approved_by: row.try_get("cutover_approved_by")?,
        backup_table: row.try_get("backup_table")?,
        backup_since: row.try_get("backup_since")?,
        backup_bytes: row.try_get("backup_bytes")?,
        checks_skipped: row.try_get("checks_skipped")?,
        heartbeat_age_seconds: row.try_get("heartbeat_age_seconds")?,
        updated_at: row.try_get("updated_at")?,
        shards: serde_json::from_value(row.try_get("shards")?).map_err(|error| Error::Corrupt(format!("shard positions: {error}")))?,
    })
}

/// A start or resume as [`Store::request_run`] queues it.
pub struct RunRequest<'a> {
    /// The run's parameter values (a start), or `None` to keep the stored ones (a resume).
    pub parameters: Option<&'a serde_json::Value>,
    /// Why staff skip the precheck and health checks for this run, when they do.
    pub checks_skipped: Option<&'a str>,
    /// The audit log's entry: its action and details.
    pub action: &'a str,
    pub details: serde_json::Value,
}

/// The migration state store in Postgres.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    url: String,
}

impl Store {
    /// Opens a pool and checks that the server answers within a few seconds.
    pub async fn connect(url: &str) -> Result<Store> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|source| Error::PostgresUnreachable { url: redact_password(url), source })?;
        Ok(Store { pool, url: url.to_string() })
    }

    /// Applies the schema under `migrations/` (embedded at compile time).
    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("../migrations").run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The URL the pool was opened with (listeners open their own connection to it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's `version()` string.
    pub async fn server_version(&self) -> Result<String> {
        Ok(sqlx::query_scalar("SELECT version()").fetch_one(&self.pool).await?)
    }

    /// The server's version number (`server_version` setting), e.g. `15.18 (Debian ...)`.
    pub async fn server_version_number(&self) -> Result<String> {
        Ok(sqlx::query_scalar("SELECT current_setting('server_version')").fetch_one(&self.pool).await?)
    }

    /// Adds a row for every defined migration not yet recorded, and refreshes the description and versions
    /// of those that are.
    pub async fn register(&self, migrations: &[Registration]) -> Result<()> {
        for migration in migrations {
            sqlx::query(
                "INSERT INTO async_migration (name, description, min_version, max_version) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description,
                     min_version = EXCLUDED.min_version, max_version = EXCLUDED.max_version
                 WHERE (async_migration.description, async_migration.min_version, async_migration.max_version)
                     IS DISTINCT FROM (EXCLUDED.description, EXCLUDED.min_version, EXCLUDED.max_version)",
            )
            .bind(&migration.name)
            .bind(&migration.description)
            .bind(&migration.min_version)
            .bind(&migration.max_version)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    pub async fn migrations(&self) -> Result<Vec<MigrationRecord>> {
        let rows = sqlx::query(&format!("SELECT {MIGRATION_COLUMNS} FROM async_migration ORDER BY name")).fetch_all(&self.pool).await?;
        rows.iter().map(record_from_row).collect()
    }

    pub async fn migration(&self, name: &str) -> Result<Option<MigrationRecord>> {
        let row = sqlx::query(&format!("SELECT {MIGRATION_COLUMNS} FROM async_migration WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// The migration that is starting or running, if any.
    pub async fn active_migration(&self) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT name FROM async_migration WHERE status IN ('starting', 'running')")
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Queues a run (start or resume): `from` → starting, with its audit row (`action` and `details`) in the same
    /// transaction. A start resets progress and the checkpoint. `checks_skipped` (why staff skip them) has the run
    /// skip its precheck and health checks, and is shown on its row.
    pub async fn request_run(&self, name: &str, from: Status, actor: &str, run: RunRequest<'_>) -> Result<()> {
        check_move(name, from, Status::Starting)?;
        let fresh_start = from != Status::Errored;
        let note = run.checks_skipped.map(|reason| format!("prechecks and health checks skipped for this run by {actor}: {reason}"));
        let mut transaction = self.pool.begin().await?;
        let outcome = sqlx::query(
            "UPDATE async_migration SET status = 'starting', requested_action = 'run', requested_by = $3,
                 parameters = COALESCE($4, parameters),
                 progress = CASE WHEN $5 THEN 0 ELSE progress END,
                 current_operation_index = CASE WHEN $5 THEN 0 ELSE current_operation_index END,
                 checkpoint = CASE WHEN $5 THEN NULL ELSE checkpoint END,
                 started_at = CASE WHEN $5 THEN NULL ELSE started_at END,
                 finished_at = NULL, current_query_id = '', stop_requested_by = NULL, stop_and_rollback = false,
                 waiting_reason = NULL, waiting_since = NULL, pause_requested_by = NULL, held_since = NULL, status_note = $6,
                 checks_skipped = $6 IS NOT NULL, cutover_ready_since = NULL, cutover_approved_by = NULL, updated_at = now()
             WHERE name = $1 AND status = $2 AND NOT rolling_back AND runner_id IS NULL",
        )
        .bind(name)
        .bind(from.as_str())
        .bind(actor)
        .bind(run.parameters)
        .bind(fresh_start)
        .bind(note)
        .execute(&mut *transaction)
        .await;
        match outcome {
            Ok(result) if result.rows_affected() == 1 => {}
            Ok(_) => return Err(Error::ChangedMeanwhile { migration: name.into() }),
            Err(sqlx::Error::Database(error)) if error.constraint() == Some("async_migration_one_active") => {
                drop(transaction);
                let active = self.active_migration().await?.unwrap_or_default();
                return Err(Error::AnotherMigrationActive { migration: name.into(), active });
            }
            Err(error) => return Err(error.into()),
        }
        insert_audit(&mut transaction, actor, run.action, Some(name), &run.details).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Queues a rollback of an errored migration, or of a completed one from the backup it kept, with its audit
    /// row in the same transaction.
    pub async fn request_rollback(&self, name: &str, actor: &str) -> Result<()> {
        let mut transaction = self.pool.begin().await?;
        let result = sqlx::query(
            "UPDATE async_migration SET rolling_back = true, requested_action = 'rollback', requested_by = $2,
                 waiting_reason = NULL, waiting_since = NULL, updated_at = now()
             WHERE name = $1 AND NOT rolling_back AND runner_id IS NULL
                 AND (status = 'errored' OR status = 'completed' AND backup_table IS NOT NULL)",
        )
        .bind(name)
        .bind(actor)
        .execute(&mut *transaction)
        .await?;
        expect_one_row(result.rows_affected(), name)?;
        insert_audit(&mut transaction, actor, "rollback", Some(name), &serde_json::json!({})).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Marks a stop request on a starting or running migration, with its audit row in the same transaction; a
    /// second stop while one is pending is refused.
    pub async fn request_stop(&self, name: &str, actor: &str, rollback: bool) -> Result<()> {
        let mut transaction = self.pool.begin().await?;
        let result = sqlx::query(
            "UPDATE async_migration SET stop_requested_by = $2, stop_and_rollback = $3, updated_at = now()
             WHERE name = $1 AND status IN ('starting', 'running') AND stop_requested_by IS NULL",
        )
        .bind(name)
        .bind(actor)
        .bind(rollback)
        .execute(&mut *transaction)
        .await?;
        if result.rows_affected() == 1 {
            let action = if rollback { "stop_and_rollback" } else { "stop" };
            insert_audit(&mut transaction, actor, action, Some(name), &serde_json::json!({})).await?;
            transaction.commit().await?;
            return Ok(());
        }
        drop(transaction);
        match self.migration(name).await? {
            Some(record) if record.stop_requested_by.is_some() && record.status.is_active() => {
                Err(Error::AlreadyStopping { migration: name.into(), by: record.stop_requested_by.unwrap_or_default() })
            }
            _ => Err(Error::ChangedMeanwhile { migration: name.into() }),
        }
    }

    /// Asks the runner of a starting or running migration to hold it after the unit of work in progress
    /// (`pause`), or to go on (`!pause`): the request and its audit row in one transaction, applied only if the
    /// migration is still starting or running with no stop or rollback under way and not paused (or, to continue,
    /// paused). Returns the migration as it is now.
    pub async fn request_pause(&self, name: &str, actor: &str, pause: bool) -> Result<MigrationRecord> {
        let mut transaction = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE async_migration SET pause_requested_by = CASE WHEN $3 THEN $2 END, updated_at = now()
             WHERE name = $1 AND status IN ('starting', 'running') AND NOT rolling_back AND stop_requested_by IS NULL
                 AND (pause_requested_by IS NULL) = $3
             RETURNING {MIGRATION_COLUMNS}"
        ))
        .bind(name)
        .bind(actor)
        .bind(pause)
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(row) = row else { return Err(Error::ChangedMeanwhile { migration: name.into() }) };
        let record = record_from_row(&row)?;
        let action = if pause { "pause" } else { "continue" };
        insert_audit(
            &mut transaction,
            actor,
            action,
            Some(name),
            &serde_json::json!({ "operation_index": record.current_operation_index }),
        )
        .await?;
        transaction.commit().await?;
        Ok(record)
    }

    /// What a run reads between two units of work: who asked to pause migration `name` (while the pause stands),
    /// and its parameter values, staff's adjustments included.
    pub async fn between_units(&self, name: &str) -> Result<(Option<String>, serde_json::Value)> {
        let row = sqlx::query_as("SELECT pause_requested_by, parameters FROM async_migration WHERE name = $1").bind(name);
        Ok(row.fetch_optional(&self.pool).await?.unwrap_or((None, serde_json::Value::Null)))
    }

    /// Changes parameter values of a starting or running migration (`changes`, checked by the caller), with its
    /// audit row (each change from what it was) in one transaction. Returns the migration as it is now.
    pub async fn request_adjust(
        &self,
        name: &str,
        actor: &str,
        changes: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<MigrationRecord> {
        let mut transaction = self.pool.begin().await?;
        let before: Option<serde_json::Value> = sqlx::query_scalar(
            "SELECT parameters FROM async_migration
             WHERE name = $1 AND status IN ('starting', 'running') AND NOT rolling_back AND stop_requested_by IS NULL FOR UPDATE",
        )
        .bind(name)
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(before) = before else { return Err(Error::ChangedMeanwhile { migration: name.into() }) };
        let row = sqlx::query(&format!(
            "UPDATE async_migration SET parameters = parameters || $2, updated_at = now() WHERE name = $1 RETURNING {MIGRATION_COLUMNS}"
        ))
        .bind(name)
        .bind(serde_json::Value::Object(changes.clone()))
        .fetch_one(&mut *transaction)
        .await?;
        let audited: serde_json::Map<String, serde_json::Value> =
            changes.iter().map(|(key, value)| (key.clone(), serde_json::json!({ "from": before[key], "to": value }))).collect();
        insert_audit(&mut transaction, actor, "adjust", Some(name), &serde_json::Value::Object(audited)).await?;
        transaction.commit().await?;
        record_from_row(&row)
    }

    /// Records the backup the run keeps of what it replaced (`Some((table, bytes))`), or that it is gone
    /// (`None`: swapped back by a rollback).
    pub async fn record_backup(&self, name: &str, runner_id: &str, backup: Option<(&str, u64)>) -> Result<()> {
        sqlx::query(
            "UPDATE async_migration SET backup_table = $3, backup_since = CASE WHEN $3 IS NULL THEN NULL ELSE coalesce(backup_since, now()) END,
                 backup_bytes = $4, updated_at = now()
             WHERE name = $1 AND runner_id = $2",
        )
        .bind(name)
        .bind(runner_id)
        .bind(backup.map(|(table, _)| table))
        .bind(backup.map(|(_, bytes)| i64::try_from(bytes).unwrap_or(i64::MAX)))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that staff finalized a completed migration: its backup `table` (dropped by the caller) is gone, in
    /// one transaction with the audit row, if the migration still keeps that backup. Returns the migration.
    pub async fn finalize(&self, name: &str, actor: &str, table: &str) -> Result<MigrationRecord> {
        let mut transaction = self.pool.begin().await?;
        let before: Option<(Option<chrono::DateTime<chrono::Utc>>, Option<i64>)> = sqlx::query_as(
            "SELECT backup_since, backup_bytes FROM async_migration
             WHERE name = $1 AND status = 'completed' AND backup_table = $2 AND runner_id IS NULL AND NOT rolling_back FOR UPDATE",
        )
        .bind(name)
        .bind(table)
        .fetch_optional(&mut *transaction)
        .await?;
        let Some((kept_since, freed_bytes)) = before else { return Err(Error::ChangedMeanwhile { migration: name.into() }) };
        let row = sqlx::query(&format!(
            "UPDATE async_migration SET backup_table = NULL, backup_since = NULL, backup_bytes = NULL, updated_at = now()
             WHERE name = $1 RETURNING {MIGRATION_COLUMNS}"
        ))
        .bind(name)
        .fetch_one(&mut *transaction)
        .await?;
        let kept_for = kept_since.map(|since| (chrono::Utc::now() - since).num_seconds());
        let details = serde_json::json!({ "dropped": table, "kept_for_seconds": kept_for, "freed_bytes": freed_bytes });
        insert_audit(&mut transaction, actor, "finalize", Some(name), &details).await?;
        transaction.commit().await?;
        record_from_row(&row)
    }

    /// Records that a run holding its cut-over is ready for it (`ready`), or that its runner took the approval
    /// and cuts over now (both cleared).
    pub async fn set_cutover_ready(&self, name: &str, runner_id: &str, ready: bool) -> Result<()> {
        sqlx::query(
            "UPDATE async_migration SET cutover_ready_since = CASE WHEN $3 THEN coalesce(cutover_ready_since, now()) END,
                 cutover_approved_by = CASE WHEN $3 THEN cutover_approved_by END, updated_at = now()
             WHERE name = $1 AND runner_id = $2",
        )
        .bind(name)
        .bind(runner_id)
        .bind(ready)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Who let migration `name` cut over, once someone has.
    pub async fn cutover_approved_by(&self, name: &str) -> Result<Option<String>> {
        let by =
            sqlx::query_scalar("SELECT cutover_approved_by FROM async_migration WHERE name = $1").bind(name).fetch_optional(&self.pool);
        Ok(by.await?.flatten())
    }

    /// Lets a run ready to cut over swap now: the approval and its audit row in one transaction, applied only
    /// while it is still ready, not yet approved, and neither stopping nor rolling back. Returns the migration.
    pub async fn request_cutover(&self, name: &str, actor: &str) -> Result<MigrationRecord> {
        let mut transaction = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE async_migration SET cutover_approved_by = $2, updated_at = now()
             WHERE name = $1 AND status = 'running' AND cutover_ready_since IS NOT NULL AND cutover_approved_by IS NULL
                 AND stop_requested_by IS NULL AND NOT rolling_back
             RETURNING {MIGRATION_COLUMNS}"
        ))
        .bind(name)
        .bind(actor)
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(row) = row else { return Err(Error::ChangedMeanwhile { migration: name.into() }) };
        let record = record_from_row(&row)?;
        let ready_for = record.cutover_ready_since.map(|since| (chrono::Utc::now() - since).num_seconds());
        insert_audit(&mut transaction, actor, "cut over", Some(name), &serde_json::json!({ "ready_for_seconds": ready_for })).await?;
        transaction.commit().await?;
        Ok(record)
    }

    /// Records that the runner holds the migration between two units of work for a pause (`held`), or let go
    /// of it; the pause request is left to staff.
    pub async fn set_held(&self, name: &str, runner_id: &str, held: bool) -> Result<()> {
        sqlx::query(
            "UPDATE async_migration SET held_since = CASE WHEN $3 THEN coalesce(held_since, now()) END, updated_at = now()
             WHERE name = $1 AND runner_id = $2",
        )
        .bind(name)
        .bind(runner_id)
        .bind(held)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A stop of a migration no runner has claimed yet: it goes straight to errored. Returns false when a
    /// runner owns it (the runner then acts on the stop request).
    pub async fn stop_unclaimed(&self, name: &str, message: &str) -> Result<bool> {
        check_move(name, Status::Starting, Status::Errored)?;
        let mut transaction = self.pool.begin().await?;
        let result = sqlx::query(
            "UPDATE async_migration SET status = 'errored', requested_action = NULL, stop_requested_by = NULL,
                 updated_at = now()
             WHERE name = $1 AND status = 'starting' AND runner_id IS NULL",
        )
        .bind(name)
        .execute(&mut *transaction)
        .await?;
        if result.rows_affected() == 1 {
            insert_error(&mut transaction, name, None, None, message).await?;
        }
        transaction.commit().await?;
        Ok(result.rows_affected() == 1)
    }

    /// Claims the oldest queued request among the migrations this runner has definitions for: sets
    /// `runner_id` and takes the lease in one transaction. Returns the claimed migration.
    pub async fn claim_request(&self, runner_id: &str, known_migrations: &[String]) -> Result<Option<MigrationRecord>> {
        let mut transaction = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE async_migration SET runner_id = $1, updated_at = now()
             WHERE name = (SELECT name FROM async_migration
                           WHERE requested_action IS NOT NULL AND runner_id IS NULL AND stop_requested_by IS NULL
                               AND name = ANY($2)
                           ORDER BY updated_at LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING {MIGRATION_COLUMNS}"
        ))
        .bind(runner_id)
        .bind(known_migrations)
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let record = record_from_row(&row)?;
        sqlx::query("INSERT INTO runner_lease (migration_name, runner_id) VALUES ($1, $2)")
            .bind(&record.name)
            .bind(runner_id)
            .execute(&mut *transaction)
            .await?;
        // A start clears `started_at` when it is requested; a resume keeps the first start's.
        let action = match (record.requested_action.as_deref(), record.started_at) {
            (Some("rollback"), _) => "rollback",
            (_, Some(_)) => "resume",
            (_, None) => "start",
        };
        sqlx::query(
            "INSERT INTO async_migration_attempt (migration_name, runner_id, action, requested_by, parameters, from_operation)
             VALUES ($1, $2, $3, coalesce($4, ''), $5, $6)",
        )
        .bind(&record.name)
        .bind(runner_id)
        .bind(action)
        .bind(&record.requested_by)
        .bind(&record.parameters)
        .bind(record.current_operation_index)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(Some(record))
    }

    /// Renews this runner's lease; false when the lease is gone (another runner declared this one dead).
    pub async fn heartbeat(&self, name: &str, runner_id: &str) -> Result<bool> {
        let result = sqlx::query("UPDATE runner_lease SET heartbeat_at = now() WHERE migration_name = $1 AND runner_id = $2")
            .bind(name)
            .bind(runner_id)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Removes leases whose heartbeat is older than `timeout` and hands back what they covered.
    pub async fn take_stale_leases(&self, timeout: Duration) -> Result<Vec<StaleLease>> {
        let rows = sqlx::query(
            "DELETE FROM runner_lease WHERE heartbeat_at < now() - make_interval(secs => $1)
             RETURNING migration_name, runner_id",
        )
        .bind(timeout.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok(StaleLease { migration_name: row.try_get(0)?, runner_id: row.try_get(1)? })).collect()
    }

    /// Moves a migration this runner owns from `from` to `to`, setting the given timestamps. Retried while
    /// Postgres is unreachable; a retry finding the move already made (its first answer was lost) succeeds.
    pub async fn move_status(&self, name: &str, runner_id: &str, from: Status, to: Status) -> Result<()> {
        check_move(name, from, to)?;
        let result = retry_while_unreachable("recording a status change", || {
            sqlx::query(
                "UPDATE async_migration SET status = $4,
                 started_at = CASE WHEN $4 = 'running' THEN COALESCE(started_at, now()) ELSE started_at END,
                 finished_at = CASE WHEN $4 IN ('completed', 'errored', 'rolled_back', 'failed_at_startup')
                                    THEN now() ELSE NULL END,
                 progress = CASE WHEN $4 = 'completed' THEN 100 ELSE progress END,
                 updated_at = now()
             WHERE name = $1 AND runner_id = $2 AND status IN ($3, $4)",
            )
            .bind(name)
            .bind(runner_id)
            .bind(from.as_str())
            .bind(to.as_str())
            .execute(&self.pool)
        })
        .await?;
        expect_one_row(result.rows_affected(), name)
    }

    /// Marks a not-started migration completed because this instance does not need it.
    pub async fn complete_not_required(&self, name: &str) -> Result<bool> {
        check_move(name, Status::NotStarted, Status::Completed)?;
        let result = sqlx::query(
            "UPDATE async_migration SET status = 'completed', progress = 100, finished_at = now(), updated_at = now()
             WHERE name = $1 AND status = 'not_started' AND runner_id IS NULL",
        )
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Records where the run is: operation index, overall progress and the current query id. Retried while
    /// Postgres is unreachable, so that a database restart does not fail the operation (the write is
    /// idempotent).
    pub async fn record_position(&self, name: &str, runner_id: &str, operation_index: usize, progress: u8, query_id: &str) -> Result<()> {
        retry_while_unreachable("recording progress", || {
            sqlx::query(
                "UPDATE async_migration SET current_operation_index = $3, progress = $4, current_query_id = $5, updated_at = now()
                 WHERE name = $1 AND runner_id = $2",
            )
            .bind(name)
            .bind(runner_id)
            .bind(operation_index as i32)
            .bind(i16::from(progress.min(100)))
            .bind(query_id)
            .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    /// Saves an operation's checkpoint (`None` clears it); retried while Postgres is unreachable.
    pub async fn save_checkpoint(&self, name: &str, runner_id: &str, checkpoint: Option<&serde_json::Value>) -> Result<()> {
        retry_while_unreachable("saving a checkpoint", || {
            sqlx::query("UPDATE async_migration SET checkpoint = $3, updated_at = now() WHERE name = $1 AND runner_id = $2")
                .bind(name)
                .bind(runner_id)
                .bind(checkpoint)
                .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    /// Records that `shard` runs operation `operation_index` on `node`, its other replicas as `replicas` says,
    /// and returns the checkpoint it saved in an earlier attempt at the same operation (a different operation's
    /// row starts over).
    pub async fn begin_shard(
        &self,
        name: &str,
        runner_id: &str,
        shard: u32,
        operation_index: usize,
        node: &str,
        replicas: &[ReplicaState],
    ) -> Result<Option<serde_json::Value>> {
        let checkpoint = retry_while_unreachable("recording a shard's start", || {
            sqlx::query_scalar::<_, Option<serde_json::Value>>(
                "INSERT INTO async_migration_shard (migration_name, shard, operation_index, node, replicas)
                 SELECT $1, $3, $4, $5, $6 FROM async_migration WHERE name = $1 AND runner_id = $2
                 ON CONFLICT (migration_name, shard) DO UPDATE SET
                     checkpoint = CASE WHEN async_migration_shard.operation_index = EXCLUDED.operation_index
                                       THEN async_migration_shard.checkpoint END,
                     progress = CASE WHEN async_migration_shard.operation_index = EXCLUDED.operation_index
                                     THEN async_migration_shard.progress ELSE 0 END,
                     operation_index = EXCLUDED.operation_index, node = EXCLUDED.node, current_query_id = '',
                     replicas = EXCLUDED.replicas, updated_at = now()
                 RETURNING checkpoint",
            )
            .bind(name)
            .bind(runner_id)
            .bind(shard as i32)
            .bind(operation_index as i32)
            .bind(node)
            .bind(sqlx::types::Json(replicas))
            .fetch_optional(&self.pool)
        })
        .await?;
        Ok(checkpoint.flatten())
    }

    /// Records a shard's progress in its operation and its current query id; retried while Postgres is
    /// unreachable.
    pub async fn record_shard_position(&self, name: &str, runner_id: &str, shard: u32, progress: u8, query_id: &str) -> Result<()> {
        retry_while_unreachable("recording a shard's progress", || {
            sqlx::query(
                "UPDATE async_migration_shard SET progress = $4, current_query_id = $5, updated_at = now()
                 WHERE migration_name = $1 AND shard = $3
                     AND EXISTS (SELECT FROM async_migration WHERE name = $1 AND runner_id = $2)",
            )
            .bind(name)
            .bind(runner_id)
            .bind(shard as i32)
            .bind(i16::from(progress.min(100)))
            .bind(query_id)
            .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    /// Records what the other replicas of a shard say now; retried while Postgres is unreachable.
    pub async fn record_shard_replicas(&self, name: &str, runner_id: &str, shard: u32, replicas: &[ReplicaState]) -> Result<()> {
        self.update_shard_json(name, runner_id, shard, "replicas", sqlx::types::Json(replicas), "recording a shard's replicas").await
    }

    /// Saves a shard's checkpoint in its operation; retried while Postgres is unreachable.
    pub async fn save_shard_checkpoint(&self, name: &str, runner_id: &str, shard: u32, checkpoint: &serde_json::Value) -> Result<()> {
        self.update_shard_json(name, runner_id, shard, "checkpoint", checkpoint, "saving a shard's checkpoint").await
    }

    /// Sets the JSON `column` of a shard's row to `value`, while `runner_id` holds the migration's lease;
    /// retried while Postgres is unreachable (`doing` names the write in the log).
    async fn update_shard_json<Value>(&self, name: &str, runner_id: &str, shard: u32, column: &str, value: Value, doing: &str) -> Result<()>
    where
        Value: serde::Serialize + Copy + Send + Sync,
        sqlx::types::Json<Value>: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        let sql = format!(
            "UPDATE async_migration_shard SET {column} = $4, updated_at = now()
             WHERE migration_name = $1 AND shard = $3
                 AND EXISTS (SELECT FROM async_migration WHERE name = $1 AND runner_id = $2)"
        );
        retry_while_unreachable(doing, || {
            sqlx::query(&sql).bind(name).bind(runner_id).bind(shard as i32).bind(sqlx::types::Json(value)).execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    /// Forgets every shard's position and the partitions worked through: a fresh run or a rollback starts over
    /// on every shard.
    pub async fn clear_shards(&self, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM async_migration_shard WHERE migration_name = $1").bind(name).execute(&self.pool).await?;
        sqlx::query("DELETE FROM async_migration_partition WHERE migration_name = $1").bind(name).execute(&self.pool).await?;
        Ok(())
    }

    /// Records the partitions operation `operation_index` works through on `shard` (0 off a cluster), replacing
    /// those an earlier attempt recorded there; those in `done` are marked done.
    pub async fn track_partitions(
        &self,
        name: &str,
        operation_index: usize,
        shard: u32,
        partitions: &[PartitionSize],
        done: &BTreeSet<String>,
    ) -> Result<()> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query("DELETE FROM async_migration_partition WHERE migration_name = $1 AND operation_index = $2 AND shard = $3")
            .bind(name)
            .bind(operation_index as i32)
            .bind(shard as i32)
            .execute(&mut *transaction)
            .await?;
        let ids: Vec<&str> = partitions.iter().map(|partition| partition.partition_id.as_str()).collect();
        let rows: Vec<i64> = partitions.iter().map(|partition| i64::try_from(partition.rows).unwrap_or(i64::MAX)).collect();
        let bytes: Vec<i64> = partitions.iter().map(|partition| i64::try_from(partition.bytes_on_disk).unwrap_or(i64::MAX)).collect();
        let done: Vec<&str> = done.iter().map(String::as_str).collect();
        sqlx::query(
            "INSERT INTO async_migration_partition (migration_name, operation_index, shard, partition_id, rows, bytes, done_at)
             SELECT $1, $2, $3, id, partition_rows, partition_bytes, CASE WHEN id = ANY($7) THEN now() END
             FROM unnest($4::text[], $5::bigint[], $6::bigint[]) AS partition (id, partition_rows, partition_bytes)",
        )
        .bind(name)
        .bind(operation_index as i32)
        .bind(shard as i32)
        .bind(&ids)
        .bind(&rows)
        .bind(&bytes)
        .bind(&done)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Marks partition `partition_id` of operation `operation_index` on `shard` done, in `seconds`.
    pub async fn partition_done(&self, name: &str, operation_index: usize, shard: u32, partition_id: &str, seconds: f64) -> Result<()> {
        retry_while_unreachable("recording a partition done", || {
            sqlx::query(
                "UPDATE async_migration_partition SET done_at = now(), seconds = $5
                 WHERE migration_name = $1 AND operation_index = $2 AND shard = $3 AND partition_id = $4",
            )
            .bind(name)
            .bind(operation_index as i32)
            .bind(shard as i32)
            .bind(partition_id)
            .bind(seconds)
            .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    /// The partitions migration `name`'s operations work through, by operation, shard and partition id.
    pub async fn partitions(&self, name: &str) -> Result<Vec<PartitionProgress>> {
        let rows = sqlx::query(
            "SELECT operation_index, shard, partition_id, rows, bytes, done_at, seconds FROM async_migration_partition
             WHERE migration_name = $1 ORDER BY operation_index, shard, partition_id",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PartitionProgress {
                    operation_index: row.try_get("operation_index")?,
                    shard: row.try_get("shard")?,
                    partition_id: row.try_get("partition_id")?,
                    rows: row.try_get("rows")?,
                    bytes: row.try_get("bytes")?,
                    done_at: row.try_get("done_at")?,
                    seconds: row.try_get("seconds")?,
                })
            })
            .collect()
    }

    /// Records that operation `operation_index` begins a fresh attempt (its earlier attempt's times and rows are
    /// replaced); retried while Postgres is unreachable.
    pub async fn begin_operation(&self, name: &str, operation_index: usize) -> Result<()> {
        retry_while_unreachable("recording an operation's start", || {
            sqlx::query(
                "INSERT INTO async_migration_operation (migration_name, operation_index) VALUES ($1, $2)
                 ON CONFLICT (migration_name, operation_index)
                 DO UPDATE SET started_at = now(), finished_at = NULL, rows_copied = NULL",
            )
            .bind(name)
            .bind(operation_index as i32)
            .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    /// Records that the current attempt at operation `operation_index` finished; retried while Postgres is
    /// unreachable.
    pub async fn finish_operation(&self, name: &str, operation_index: usize) -> Result<()> {
        retry_while_unreachable("recording an operation's end", || {
            sqlx::query("UPDATE async_migration_operation SET finished_at = now() WHERE migration_name = $1 AND operation_index = $2")
                .bind(name)
                .bind(operation_index as i32)
                .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    /// Records how many rows the current attempt at operation `operation_index` has copied in all; retried
    /// while Postgres is unreachable.
    pub async fn record_rows_copied(&self, name: &str, operation_index: usize, rows: u64) -> Result<()> {
        retry_while_unreachable("recording rows copied", || {
            sqlx::query("UPDATE async_migration_operation SET rows_copied = $3 WHERE migration_name = $1 AND operation_index = $2")
                .bind(name)
                .bind(operation_index as i32)
                .bind(i64::try_from(rows).unwrap_or(i64::MAX))
                .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    pub async fn set_waiting_reason(&self, name: &str, runner_id: &str, reason: Option<&str>) -> Result<()> {
        sqlx::query(
            "UPDATE async_migration SET waiting_reason = $3,
                 waiting_since = CASE WHEN $3::text IS NOT NULL THEN coalesce(waiting_since, now()) END, updated_at = now()
             WHERE name = $1 AND runner_id = $2",
        )
        .bind(name)
        .bind(runner_id)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks the start of a rollback by the owning runner (auto-rollback or stop-and-rollback); retried while
    /// Postgres is unreachable.
    pub async fn set_rolling_back(&self, name: &str, runner_id: &str, rolling_back: bool) -> Result<()> {
        retry_while_unreachable("recording a rollback's start", || {
            sqlx::query("UPDATE async_migration SET rolling_back = $3, updated_at = now() WHERE name = $1 AND runner_id = $2")
                .bind(name)
                .bind(runner_id)
                .bind(rolling_back)
                .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    /// Ends a run: `to` becomes the status (if it differs from the current one), the runner and any request
    /// are cleared and the lease is released, in one transaction. Retried while Postgres is unreachable, so that
    /// a restart as a run ends does not leave the run to the lease timeout.
    pub async fn finish_run(&self, name: &str, runner_id: &str, to: Status, reset_position: bool) -> Result<()> {
        retry_while_unreachable("recording the end of a run", || self.finish_run_once(name, runner_id, to, reset_position)).await
    }

    async fn finish_run_once(&self, name: &str, runner_id: &str, to: Status, reset_position: bool) -> Result<()> {
        let mut transaction = self.pool.begin().await?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT status FROM async_migration WHERE name = $1 AND runner_id = $2 FOR UPDATE")
                .bind(name)
                .bind(runner_id)
                .fetch_optional(&mut *transaction)
                .await?;
        let Some(current) = current.as_deref().and_then(Status::parse) else {
            // An earlier attempt whose answer was lost may have ended the run already.
            let ended: Option<String> =
                sqlx::query_scalar("SELECT status FROM async_migration WHERE name = $1 AND runner_id IS NULL AND requested_action IS NULL")
                    .bind(name)
                    .fetch_optional(&mut *transaction)
                    .await?;
            if ended.as_deref() == Some(to.as_str()) {
                return Ok(());
            }
            return Err(Error::LeaseLost { migration: name.into() });
        };
        if current != to {
            check_move(name, current, to)?;
        }
        sqlx::query(
            "UPDATE async_migration SET status = $3, runner_id = NULL, requested_action = NULL, rolling_back = false,
                 stop_requested_by = NULL, stop_and_rollback = false, waiting_reason = NULL, waiting_since = NULL, current_query_id = '',
                 pause_requested_by = NULL, held_since = NULL, cutover_ready_since = NULL, cutover_approved_by = NULL,
                 finished_at = CASE WHEN status = $3 THEN finished_at ELSE now() END,
                 progress = CASE WHEN $3 = 'completed' THEN 100 WHEN $4 THEN 0 ELSE progress END,
                 current_operation_index = CASE WHEN $4 THEN 0 ELSE current_operation_index END,
                 checkpoint = CASE WHEN $4 OR $3 = 'completed' THEN NULL ELSE checkpoint END,
                 backup_table = CASE WHEN $3 = 'rolled_back' THEN NULL ELSE backup_table END,
                 backup_since = CASE WHEN $3 = 'rolled_back' THEN NULL ELSE backup_since END,
                 backup_bytes = CASE WHEN $3 = 'rolled_back' THEN NULL ELSE backup_bytes END,
                 updated_at = now()
             WHERE name = $1 AND runner_id = $2",
        )
        .bind(name)
        .bind(runner_id)
        .bind(to.as_str())
        .bind(reset_position)
        .execute(&mut *transaction)
        .await?;
        sqlx::query("DELETE FROM runner_lease WHERE migration_name = $1 AND runner_id = $2")
            .bind(name)
            .bind(runner_id)
            .execute(&mut *transaction)
            .await?;
        end_attempt(&mut transaction, name, runner_id).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Marks a migration whose runner died: errored (or still errored, for a rollback), resumable, and the
    /// reason recorded.
    pub async fn abandon_run(&self, lease: &StaleLease) -> Result<Option<MigrationRecord>> {
        let mut transaction = self.pool.begin().await?;
        let record = abandon(&mut transaction, lease, |record| {
            format!("runner {} died during operation {}; resume it, or roll it back", lease.runner_id, record.current_operation_index)
        })
        .await?;
        transaction.commit().await?;
        Ok(record)
    }

    /// An escape hatch: marks errored a migration whose runner's heartbeat is older than `lease_timeout` (and so
    /// no live runner has reaped yet), releasing its lease, with `reason` in its error log, on its row and in the
    /// audit log, in one transaction. Refused when the runner heartbeats again meanwhile.
    pub async fn mark_errored(&self, name: &str, actor: &str, reason: &str, lease_timeout: Duration) -> Result<MigrationRecord> {
        let mut transaction = self.pool.begin().await?;
        let runner_id: Option<String> = sqlx::query_scalar(
            "DELETE FROM runner_lease WHERE migration_name = $1 AND heartbeat_at < now() - make_interval(secs => $2) RETURNING runner_id",
        )
        .bind(name)
        .bind(lease_timeout.as_secs_f64())
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(runner_id) = runner_id else { return Err(Error::ChangedMeanwhile { migration: name.into() }) };
        let note = format!("marked errored by {actor}: {reason}");
        let lease = StaleLease { migration_name: name.into(), runner_id };
        if abandon(&mut transaction, &lease, |_| note.clone()).await?.is_none() {
            return Err(Error::ChangedMeanwhile { migration: name.into() });
        }
        sqlx::query("UPDATE async_migration SET status_note = $2 WHERE name = $1")
            .bind(name)
            .bind(&note)
            .execute(&mut *transaction)
            .await?;
        insert_audit(&mut transaction, actor, "mark errored", Some(name), &serde_json::json!({ "reason": reason })).await?;
        let record = self.migration_in(&mut transaction, name).await?;
        transaction.commit().await?;
        Ok(record)
    }

    /// An escape hatch: marks an errored migration (not rolling back, no runner on it) completed because staff
    /// finished its work by hand, with `reason` on its row and in the audit log, in one transaction.
    pub async fn mark_completed(&self, name: &str, actor: &str, reason: &str) -> Result<MigrationRecord> {
        check_move(name, Status::Errored, Status::Completed)?;
        let mut transaction = self.pool.begin().await?;
        let note = format!("marked completed by {actor}: {reason}");
        let result = sqlx::query(
            "UPDATE async_migration SET status = 'completed', progress = 100, checkpoint = NULL, finished_at = now(),
                 requested_action = NULL, status_note = $2, updated_at = now()
             WHERE name = $1 AND status = 'errored' AND NOT rolling_back AND runner_id IS NULL",
        )
        .bind(name)
        .bind(&note)
        .execute(&mut *transaction)
        .await?;
        expect_one_row(result.rows_affected(), name)?;
        insert_audit(&mut transaction, actor, "mark completed", Some(name), &serde_json::json!({ "reason": reason })).await?;
        let record = self.migration_in(&mut transaction, name).await?;
        transaction.commit().await?;
        Ok(record)
    }

    async fn migration_in(&self, connection: &mut sqlx::PgConnection, name: &str) -> Result<MigrationRecord> {
        let sql = format!("SELECT {MIGRATION_COLUMNS} FROM async_migration WHERE name = $1");
        record_from_row(&sqlx::query(&sql).bind(name).fetch_one(connection).await?)
    }

    /// The runs of migration `name` runners took up, newest first.
    pub async fn attempts(&self, name: &str) -> Result<Vec<Attempt>> {
        let rows = sqlx::query(
            "SELECT action, requested_by, parameters, from_operation, started_at, finished_at, outcome, at_operation
             FROM async_migration_attempt WHERE migration_name = $1 ORDER BY started_at DESC, id DESC",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Attempt {
                    action: row.try_get("action")?,
                    requested_by: row.try_get("requested_by")?,
                    parameters: row.try_get("parameters")?,
                    from_operation: row.try_get("from_operation")?,
                    started_at: row.try_get("started_at")?,
                    finished_at: row.try_get("finished_at")?,
                    outcome: row.try_get("outcome")?,
                    at_operation: row.try_get("at_operation")?,
                })
            })
            .collect()
    }

    /// Records one partition copied by migration `name`: its bytes on disk, rows and the statement's duration.
    pub async fn record_copy_sample(&self, name: &str, rows: u64, bytes: u64, seconds: f64) -> Result<()> {
        sqlx::query("INSERT INTO clickhouse_copy_sample (migration_name, rows, bytes, seconds) VALUES ($1, $2, $3, $4)")
            .bind(name)
            .bind(i64::try_from(rows).unwrap_or(i64::MAX))
            .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
            .bind(seconds)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The bytes per second the newest [`COPY_SAMPLES_READ`] partition copies achieved together, if any copied a
    /// byte in measurable time.
    pub async fn copy_throughput(&self) -> Result<Option<f64>> {
        let (bytes, seconds): (Option<f64>, Option<f64>) = sqlx::query_as(
            "SELECT sum(bytes)::double precision, sum(seconds) FROM
                 (SELECT bytes, seconds FROM clickhouse_copy_sample ORDER BY measured_at DESC, id DESC LIMIT $1) AS newest",
        )
        .bind(COPY_SAMPLES_READ)
        .fetch_one(&self.pool)
        .await?;
        Ok(match (bytes, seconds) {
            (Some(bytes), Some(seconds)) if bytes > 0.0 && seconds > 0.0 => Some(bytes / seconds),
            _ => None,
        })
    }

    /// Adds an entry to a migration's error log; retried while Postgres is unreachable, since a run that ends
    /// in error must say why.
    pub async fn record_error(&self, name: &str, operation_index: Option<i32>, query_id: Option<&str>, message: &str) -> Result<()> {
        retry_while_unreachable("recording an error", || async {
            let mut connection = self.pool.acquire().await?;
            insert_error(&mut connection, name, operation_index, query_id, message).await
        })
        .await
    }

    pub async fn errors(&self, name: &str) -> Result<Vec<MigrationError>> {
        let rows = sqlx::query(
            "SELECT occurred_at, operation_index, query_id, message FROM async_migration_error
             WHERE migration_name = $1 ORDER BY occurred_at, id",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(MigrationError {
                    occurred_at: row.try_get(0)?,
                    operation_index: row.try_get(1)?,
                    query_id: row.try_get(2)?,
                    message: row.try_get(3)?,
                })
            })
            .collect()
    }

    pub async fn audit(&self, actor: &str, action: &str, migration: Option<&str>, parameters: &serde_json::Value) -> Result<()> {
        let mut connection = self.pool.acquire().await?;
        insert_audit(&mut connection, actor, action, migration, parameters).await
    }

    /// The newest `limit` audit entries, newest first.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query("SELECT occurred_at, actor, action, migration_name, parameters FROM audit_log ORDER BY id DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    occurred_at: row.try_get(0)?,
                    actor: row.try_get(1)?,
                    action: row.try_get(2)?,
                    migration_name: row.try_get(3)?,
                    parameters: row.try_get(4)?,
                })
            })
            .collect()
    }

    /// Every stored runtime setting as (key, value). Retried while Postgres is unreachable: a runner reads
    /// them as each operation begins, and a database restart then must not fail the operation.
    pub async fn settings(&self) -> Result<Vec<(String, serde_json::Value)>> {
        let rows =
            retry_while_unreachable("reading the settings", || sqlx::query("SELECT key, value FROM runtime_setting").fetch_all(&self.pool))
                .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    /// Saves a setting's value (checked by the caller), with its audit row in the same transaction.
    pub async fn save_setting(&self, key: &str, value: &serde_json::Value, actor: &str) -> Result<()> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO runtime_setting (key, value, updated_by) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_by = EXCLUDED.updated_by, updated_at = now()",
        )
        .bind(key)
        .bind(value)
        .bind(actor)
        .execute(&mut *transaction)
        .await?;
        insert_audit(&mut transaction, actor, "update setting", None, &serde_json::json!({ key: value })).await?;
        transaction.commit().await?;
        Ok(())
    }
}

/// Ends the open attempt of runner `runner_id` at migration `name` with the migration's status and operation as
/// they are now (inside the transaction that set them).
async fn end_attempt(connection: &mut sqlx::PgConnection, name: &str, runner_id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE async_migration_attempt AS attempt SET finished_at = now(), outcome = migration.status,
             at_operation = migration.current_operation_index
         FROM async_migration AS migration
         WHERE migration.name = attempt.migration_name AND attempt.migration_name = $1 AND attempt.runner_id = $2
             AND attempt.finished_at IS NULL",
    )
    .bind(name)
    .bind(runner_id)
    .execute(connection)
    .await?;
    Ok(())
}

async fn insert_error(
    connection: &mut sqlx::PgConnection,
    name: &str,
    operation_index: Option<i32>,
    query_id: Option<&str>,
    message: &str,
) -> Result<()> {
    sqlx::query("INSERT INTO async_migration_error (migration_name, operation_index, query_id, message) VALUES ($1, $2, $3, $4)")
        .bind(name)
        .bind(operation_index)
        .bind(query_id.filter(|id| !id.is_empty()))
        .bind(message)
        .execute(connection)
        .await?;
    Ok(())
}

/// Marks the run `lease` covered errored (it stays errored if it was, for a rollback), clears what the runner
/// was doing, and records `message` (made from the migration as it was left) as its error; the lease itself is
/// the caller's to remove. `None` when the runner no longer owns it.
async fn abandon(
    transaction: &mut sqlx::PgConnection,
    lease: &StaleLease,
    message: impl FnOnce(&MigrationRecord) -> String,
) -> Result<Option<MigrationRecord>> {
    let current: Option<String> = sqlx::query_scalar("SELECT status FROM async_migration WHERE name = $1 AND runner_id = $2 FOR UPDATE")
        .bind(&lease.migration_name)
        .bind(&lease.runner_id)
        .fetch_optional(&mut *transaction)
        .await?;
    // A rollback's runner died with the migration errored already: it stays errored, and resumable.
    match current.as_deref().and_then(Status::parse) {
        Some(Status::Errored) | None => {}
        Some(from) => check_move(&lease.migration_name, from, Status::Errored)?,
    }
    let row = sqlx::query(&format!(
        "UPDATE async_migration SET status = 'errored', runner_id = NULL, requested_action = NULL,
             rolling_back = false, stop_requested_by = NULL, stop_and_rollback = false, waiting_reason = NULL, waiting_since = NULL,
             pause_requested_by = NULL, held_since = NULL, cutover_ready_since = NULL, cutover_approved_by = NULL,
             current_query_id = '', finished_at = now(), updated_at = now()
         WHERE name = $1 AND runner_id = $2 AND status IN ('starting', 'running', 'errored')
         RETURNING {MIGRATION_COLUMNS}"
    ))
    .bind(&lease.migration_name)
    .bind(&lease.runner_id)
    .fetch_optional(&mut *transaction)
    .await?;
    let record = row.as_ref().map(record_from_row).transpose()?;
    if let Some(record) = &record {
        insert_error(&mut *transaction, &record.name, Some(record.current_operation_index), None, &message(record)).await?;
        end_attempt(&mut *transaction, &record.name, &lease.runner_id).await?;
    }
    Ok(record)
}

/// An entry of the audit log, written with `connection` (inside a request's transaction, or alone).
pub(crate) async fn insert_audit(
    connection: &mut sqlx::PgConnection,
    actor: &str,
    action: &str,
    migration: Option<&str>,
    parameters: &serde_json::Value,
) -> Result<()> {
    sqlx::query("INSERT INTO audit_log (actor, action, migration_name, parameters) VALUES ($1, $2, $3, $4)")
        .bind(actor)
        .bind(action)
        .bind(migration)
        .bind(parameters)
        .execute(connection)
        .await?;
    Ok(())
}

/// How long idempotent writes made during a run, and the reads of the settings, keep retrying while Postgres
/// cannot be reached.
const UNREACHABLE_RETRY_BUDGET: Duration = Duration::from_secs(30);

/// True for failures that say Postgres is gone for now (restarting, network), not that the query is wrong.
fn is_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        // Class 08: connection exceptions; 57P01-57P03: shutting down or starting up.
        sqlx::Error::Database(database) => {
            database.code().is_some_and(|code| code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03"))
        }
        _ => false,
    }
}

/// Runs an idempotent statement (or transaction), retrying with backoff while Postgres is unreachable, for at
/// most [`UNREACHABLE_RETRY_BUDGET`].
async fn retry_while_unreachable<T, Failure, Statement, Attempt>(what: &str, statement: Statement) -> Result<T>
where
    Failure: Into<Error>,
    Statement: Fn() -> Attempt,
    Attempt: std::future::Future<Output = std::result::Result<T, Failure>>,
{
    let deadline = std::time::Instant::now() + UNREACHABLE_RETRY_BUDGET;
    let mut pause = Duration::from_millis(100);
    loop {
        match statement().await.map_err(Into::into) {
            Err(Error::Postgres(error)) if is_unreachable(&error) && std::time::Instant::now() < deadline => {
                tracing::warn!(%error, "{what}: Postgres is unreachable; retrying in {} ms", pause.as_millis());
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            outcome => return outcome,
        }
    }
}

fn expect_one_row(rows: u64, name: &str) -> Result<()> {
    if rows == 1 {
        Ok(())
    } else {
        Err(Error::ChangedMeanwhile { migration: name.into() })
    }
}

/// The URL with any password replaced, fit for logs and error messages.
pub fn redact_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}
