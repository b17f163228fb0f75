//! The runner: claims queued runs and rollbacks under a lease in Postgres, executes operations in order,
//! acts on stop requests, health checks and dead runners, rolls back in reverse order, and auto-starts.
//!
//! Any number of runners (the one embedded in `amigo serve`, `amigo worker`, a `--wait` CLI) may run
//! against one database: the lease row makes sure exactly one executes a given migration.

use std::time::Duration;

use futures::future::{Fuse, FusedFuture, FutureExt};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tracing::Instrument;

use crate::context::{MigrationContext, RunPosition};
use crate::definition::{CheckOutcome, MigrationDefinition, OperationAction};
use crate::parameters::Parameters;
use crate::record::MigrationRecord;
use crate::status::Status;
use crate::{Engine, Error, Result, ENGINE_ACTOR};

/// Actor name recorded for what the runner does on its own.
pub const AUTO_START_ACTOR: &str = "auto-start";

/// What a failed rollback's error tells the operator to do: the run stays errored and the rollback can be asked
/// for again, from the operation it could not undo.
const AFTER_A_FAILED_ROLLBACK: &str =
    "; it stays errored: once the cause is fixed (if ClickHouse could not be reached: once it answers again), roll it back again";

/// How a step of a run ended.
enum StepEnd {
    Done,
    Failed(Error),
    Stopped { by: String, rollback: bool },
    HealthFailed(String),
    LeaseLost,
    ShutDown,
}

/// What every runner does before it claims work (and before each auto-start): clean up after dead runners
/// and complete what this instance does not need.
impl Engine {
    /// Marks errored (and resumable) every run whose runner stopped renewing its lease, killing the query it
    /// left behind.
    pub async fn reap_dead_runners(&self) -> Result<()> {
        for lease in self.store.take_stale_leases(self.config.lease_timeout).await? {
            self.kill_statements(&lease.migration_name).await?;
            if let Some(record) = self.store.abandon_run(&lease).await? {
                tracing::warn!(migration = %record.name, runner_id = %lease.runner_id, "runner died; migration errored");
            }
        }
        Ok(())
    }

    /// Marks completed every not-started migration whose `is_required` check says this instance does not
    /// need it. Runners do this when they start and before each auto-start; not at connect, so that commands
    /// which prepare the instance (`amigo seed`) come first.
    pub async fn complete_not_required(&self) -> Result<()> {
        let mut entry = None;
        for record in self.store.migrations().await? {
            if record.status != Status::NotStarted {
                continue;
            }
            let Some(definition) = self.definition(&record.name) else { continue };
            let Some(is_required) = &definition.is_required else { continue };
            let clickhouse = match &entry {
                Some(clickhouse) => clickhouse,
                None => entry.insert(self.entry().await?),
            };
            let context = MigrationContext::for_checks(
                &record.name,
                clickhouse.clone(),
                self.cluster.clone(),
                self.store.pool().clone(),
                Parameters::from_json(&record.name, &definition.parameters, &serde_json::Map::new())?,
            );
            if !is_required(context).await? && self.store.complete_not_required(&record.name).await? {
                self.store
                    .audit(ENGINE_ACTOR, "completed: not required on this instance", Some(&record.name), &serde_json::json!({}))
                    .await?;
            }
        }
        Ok(())
    }
}

/// One runner: an identity and the engine it works for.
#[derive(Clone)]
pub struct Runner {
    engine: Engine,
    runner_id: String,
}

impl Runner {
    pub fn new(engine: Engine) -> Runner {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let runner_id = format!("{host}-{}-{}", std::process::id(), &unique[..8]);
        Runner { engine, runner_id }
    }

    pub fn id(&self) -> &str {
        &self.runner_id
    }

    /// Works until `shutdown` turns true: wakes on every change announced by Postgres and at least once per
    /// heartbeat interval. A run in progress when shutdown comes is stopped and left resumable. Beside it, the
    /// runner delivers notifications ([`crate::notifications::Courier`]), a long run or not.
    pub async fn run(&self, shutdown: watch::Receiver<bool>) {
        let courier = self.engine.courier();
        tokio::join!(self.work(shutdown.clone()), courier.run(shutdown));
    }

    async fn work(&self, mut shutdown: watch::Receiver<bool>) {
        let mut changes = self.engine.subscribe().await;
        tracing::info!(runner_id = %self.runner_id, "runner started");
        if let Err(error) = self.engine.complete_not_required().await {
            tracing::error!(%error, "cannot tell which migrations this instance needs");
        }
        while !*shutdown.borrow() {
            if let Err(error) = self.work_once(&shutdown).await {
                tracing::error!(%error, "runner pass failed; retrying");
            }
            tokio::select! {
                () = shutdown_requested(&mut shutdown) => {}
                _ = changes.recv() => {}
                () = tokio::time::sleep(self.engine.config.heartbeat_interval()) => {}
            }
        }
        tracing::info!(runner_id = %self.runner_id, "runner stopped");
    }

    /// One pass: marks runs of dead runners errored, auto-starts if asked to, then executes one queued
    /// request to its end. Returns true when it executed something.
    pub async fn work_once(&self, shutdown: &watch::Receiver<bool>) -> Result<bool> {
        self.engine.reap_dead_runners().await?;
        self.auto_start().await?;
        let Some(record) = self.engine.store.claim_request(&self.runner_id, &self.engine.definition_names()).await? else {
            return Ok(false);
        };
        tracing::info!(migration = %record.name, action = ?record.requested_action, "claimed");
        let run_span = tracing::info_span!("run", migration = %record.name, runner_id = %self.runner_id);
        if let Err(error) = self.execute(&record, shutdown.clone()).instrument(run_span).await {
            self.end_after_runner_error(&record.name, &error).await;
        }
        Ok(true)
    }

    /// Records an error that broke the runner's own work (not an operation's) and ends the run: failed at
    /// startup before it ran, errored (resumable) after. If even that cannot be written, the lease times
    /// out and whichever runner notices marks the run errored.
    async fn end_after_runner_error(&self, name: &str, error: &Error) {
        let message = format!("the runner failed: {error}");
        tracing::error!(migration = %name, %message);
        let store = &self.engine.store;
        let ended = async {
            let record = store.migration(name).await?.ok_or_else(|| Error::UnknownMigration(name.into()))?;
            let end = match record.status {
                Status::Starting if record.started_at.is_none() => Status::FailedAtStartup,
                Status::Starting | Status::Running => Status::Errored,
                other => other,
            };
            store.record_error(name, Some(record.current_operation_index), None, &message).await?;
            store.finish_run(name, &self.runner_id, end, false).await
        };
        if let Err(error) = ended.await {
            tracing::error!(migration = %name, %error, "cannot record the failure; the lease will time out");
        }
    }

    /// Starts the next required migration when auto-start is on and nothing else is active or queued.
    async fn auto_start(&self) -> Result<()> {
        if !self.engine.settings().await?.auto_start {
            return Ok(());
        }
        let records = self.engine.store.migrations().await?;
        if records.iter().any(|record| record.status.is_active() || record.requested_action.is_some()) {
            return Ok(());
        }
        self.engine.complete_not_required().await?;
        for record in records.iter().filter(|record| record.status == Status::NotStarted) {
            let Some(definition) = self.engine.definition(&record.name) else { continue };
            if !definition.versions.contains(&self.engine.config.instance_version) {
                continue;
            }
            match self.engine.start(&record.name, AUTO_START_ACTOR, &serde_json::Map::new()).await {
                Ok(()) => {
                    tracing::info!(migration = %record.name, "auto-started");
                    return Ok(());
                }
                Err(error) if error.is_refusal() => {
                    tracing::info!(migration = %record.name, %error, "auto-start skipped it");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Executes a claimed request (a run or a rollback) to its end, recording everything on the way.
    async fn execute(&self, record: &MigrationRecord, shutdown: watch::Receiver<bool>) -> Result<()> {
        let store = &self.engine.store;
        let definition = self.engine.definition(&record.name).cloned().ok_or_else(|| Error::UnknownMigration(record.name.clone()))?;
        let parameters = stored_parameters(&definition, record)?;
        // A statement whose kill failed when an earlier attempt ended (ClickHouse did not answer), on any node,
        // may still run and would race this attempt: the copy of a partition could land after its new copy's
        // `DROP PARTITION`.
        self.engine.kill_statements(&record.name).await?;
        let context = MigrationContext::for_checks(
            &record.name,
            self.engine.entry().await?,
            self.engine.cluster.clone(),
            store.pool().clone(),
            parameters,
        );
        if record.requested_action.as_deref() == Some("rollback") {
            return self.roll_back(&definition, &context, record.current_operation_index as usize).await;
        }
        if record.started_at.is_none() {
            store.clear_shards(&record.name).await?;
            if let Some(reason) = self.startup_failure(&definition, &context, record.checks_skipped).await? {
                store.record_error(&record.name, None, None, &reason).await?;
                return store.finish_run(&record.name, &self.runner_id, Status::FailedAtStartup, false).await;
            }
        }
        store.move_status(&record.name, &self.runner_id, Status::Starting, Status::Running).await?;
        let first = record.current_operation_index as usize;
        let mut checkpoint = record.checkpoint.clone();
        for index in first..definition.operations.len() {
            let position = RunPosition::starting(
                store,
                &self.runner_id,
                index,
                definition.operations.len(),
                checkpoint.take(),
                definition.throttle.clone(),
            );
            store.record_position(&record.name, &self.runner_id, index, position.percent(0.0), "").await?;
            store.begin_operation(&record.name, index).await?;
            let step_context = context.within_run(position);
            let step = run_operation(&definition, index, &step_context);
            let end = self.supervise(&definition, &step_context, step, !record.checks_skipped, shutdown.clone()).await;
            if let StepEnd::Done = end {
                store.finish_operation(&record.name, index).await?;
                store.save_checkpoint(&record.name, &self.runner_id, None).await?;
                continue;
            }
            return self.handle_failure(&definition, &step_context, index, end).await;
        }
        store.finish_run(&record.name, &self.runner_id, Status::Completed, false).await?;
        tracing::info!(migration = %record.name, "completed");
        Ok(())
    }

    /// What stops a fresh start: service versions out of range or a failing precheck.
    async fn startup_failure(
        &self,
        definition: &MigrationDefinition,
        context: &MigrationContext,
        precheck_skipped: bool,
    ) -> Result<Option<String>> {
        let clickhouse_version = self.engine.clickhouse.version();
        if !definition.clickhouse_versions.contains(clickhouse_version) {
            return Ok(Some(format!(
                "{} needs ClickHouse {}, and this server runs {clickhouse_version}",
                definition.name, definition.clickhouse_versions
            )));
        }
        let postgres_version = self.engine.postgres_version().await?;
        if !definition.postgres_versions.contains(&postgres_version) {
            return Ok(Some(format!(
                "{} needs Postgres {}, and this server runs {postgres_version}",
                definition.name, definition.postgres_versions
            )));
        }
        match &definition.precheck {
            Some(_) if precheck_skipped => tracing::warn!(migration = %definition.name, "precheck skipped for this run, as staff asked"),
            Some(precheck) => {
                if let CheckOutcome::Fail(reason) = precheck(context.clone()).await? {
                    return Ok(Some(format!("precheck failed: {reason}")));
                }
            }
            None => {}
        }
        Ok(None)
    }

    /// Drives one step while keeping the lease alive, watching for stop requests, running the health check
    /// (unless `health_checked` is false: staff skipped it for this run) and listening for shutdown. The health check runs beside the heartbeats and must answer before the
    /// next one is due: a server that stopped answering (paused, cut off) fails it instead of hanging the run.
    async fn supervise(
        &self,
        definition: &MigrationDefinition,
        context: &MigrationContext,
        step: impl std::future::Future<Output = Result<()>>,
        health_checked: bool,
        mut shutdown: watch::Receiver<bool>,
    ) -> StepEnd {
        let name = &definition.name;
        let mut changes = self.engine.subscribe().await;
        let mut heartbeat = tokio::time::interval(self.engine.config.heartbeat_interval());
        let health_interval = match self.engine.settings().await {
            Ok(settings) => Duration::from_secs(settings.health_check_interval_seconds),
            Err(error) => return StepEnd::Failed(error),
        };
        let mut health = tokio::time::interval_at(tokio::time::Instant::now() + health_interval, health_interval);
        health.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut health_check = std::pin::pin!(Fuse::terminated());
        tokio::pin!(step);
        loop {
            tokio::select! {
                outcome = &mut step => return match outcome {
                    Ok(()) => StepEnd::Done,
                    // A stop kills the query from the requesting process at once, so the statement may fail
                    // before the stop request reaches this loop: a failure with a stop pending is that stop.
                    Err(error) => match self.engine.store.migration(name).await {
                        Ok(Some(record)) => stop_requested(&record).unwrap_or(StepEnd::Failed(error)),
                        _ => StepEnd::Failed(error),
                    },
                },
                () = shutdown_requested(&mut shutdown) => return StepEnd::ShutDown,
                change = changes.recv() => {
                    if let Ok(record) = change {
                        if record.name == *name {
                            if let Some(end) = stop_requested(&record) {
                                return end;
                            }
                        }
                    }
                }
                _ = heartbeat.tick() => {
                    match self.engine.store.heartbeat(name, &self.runner_id).await {
                        Ok(true) => {}
                        Ok(false) => return StepEnd::LeaseLost,
                        Err(error) => tracing::warn!(%error, "heartbeat failed; retrying"),
                    }
                    // Notifications can be missed while the listener reconnects: read the stop flag too.
                    if let Ok(Some(record)) = self.engine.store.migration(name).await {
                        if let Some(end) = stop_requested(&record) {
                            return end;
                        }
                    }
                }
                _ = health.tick(), if health_checked && definition.health_check.is_some() && health_check.is_terminated() => {
                    let check = definition.health_check.as_ref().expect("guarded by the branch condition");
                    health_check.set(tokio::time::timeout(health_interval, check(context.clone())).fuse());
                }
                outcome = &mut health_check, if !health_check.is_terminated() => match outcome {
                    Ok(Ok(CheckOutcome::Pass)) => {}
                    Ok(Ok(CheckOutcome::Fail(reason))) => return StepEnd::HealthFailed(reason),
                    Ok(Err(error)) => return StepEnd::HealthFailed(format!("the health check could not run: {error}")),
                    Err(_) => {
                        return StepEnd::HealthFailed(format!("the health check did not answer within {} s", health_interval.as_secs()))
                    }
                },
            }
        }
    }

    /// Records why operation `index` did not finish, kills its query, and rolls back when that is the rule.
    async fn handle_failure(&self, definition: &MigrationDefinition, context: &MigrationContext, index: usize, end: StepEnd) -> Result<()> {
        let name = &definition.name;
        let store = &self.engine.store;
        let query_id = context.current_query_id();
        let interrupted = matches!(end, StepEnd::Failed(_) | StepEnd::HealthFailed(_) | StepEnd::Stopped { .. });
        let (mut message, roll_back) = match end {
            StepEnd::Done => unreachable!("handled by the caller"),
            StepEnd::LeaseLost => {
                tracing::warn!(migration = %name, "lease lost; leaving the migration to whoever took it");
                self.engine.kill_statements(name).await?;
                return Ok(());
            }
            StepEnd::Failed(error) => {
                let disabled = self.engine.settings().await?.disable_auto_rollback;
                (format!("operation {index} failed: {error}"), !disabled)
            }
            StepEnd::HealthFailed(reason) => {
                let disabled = self.engine.settings().await?.disable_auto_rollback;
                (format!("health check failed during operation {index}: {reason}"), !disabled)
            }
            StepEnd::Stopped { by, rollback } => (format!("stopped by {by} during operation {index}"), rollback),
            StepEnd::ShutDown => (format!("the runner shut down during operation {index}; resume it to continue"), false),
        };
        // The failure is recorded even when ClickHouse cannot be reached; what still runs there is killed
        // before the migration runs again.
        // Not the rollback's: a kill the server takes late must not end the rollback that follows.
        if let Err(error) = self.engine.kill_statements_of(name, false).await {
            message = format!("{message}; its query could not be killed: {error}");
        }
        if let Some(on_interrupt) = definition.operations[index].on_interrupt.as_ref().filter(|_| interrupted) {
            // Bounded like a rollback, so that clean-up that hangs (a server that stopped answering) cannot keep
            // the run from being recorded.
            let limit = Duration::from_secs(self.engine.settings().await?.rollback_timeout_seconds);
            match tokio::time::timeout(limit, on_interrupt(context.clone())).await {
                Ok(Ok(Some(note))) => message = format!("{message}; {note}"),
                Ok(Ok(None)) => {}
                Ok(Err(error)) => message = format!("{message}; ending the work it left running failed: {error}"),
                Err(_) => {
                    message = format!(
                        "{message}; ending the work it left running did not finish within the rollback timeout of {} s: \
                         check system.mutations and system.processes before resuming",
                        limit.as_secs()
                    )
                }
            }
        }
        tracing::warn!(migration = %name, query_id = query_id.as_deref().unwrap_or(""), %message, "migration errored");
        store.record_error(name, Some(index as i32), query_id.as_deref(), &message).await?;
        if roll_back {
            store.move_status(name, &self.runner_id, Status::Running, Status::Errored).await?;
            self.roll_back(definition, context, index).await
        } else {
            // One write, so that no one sees the migration errored while it still shows its runner and query.
            store.finish_run(name, &self.runner_id, Status::Errored, false).await
        }
    }

    /// Rolls back operations `from` down to 0, each once, within the rollback timeout. Ends rolled back, or
    /// errored with the rollback's error recorded.
    async fn roll_back(&self, definition: &MigrationDefinition, context: &MigrationContext, from: usize) -> Result<()> {
        let name = &definition.name;
        let store = &self.engine.store;
        store.set_rolling_back(name, &self.runner_id, true).await?;
        store.clear_shards(name).await?;
        let timeout = Duration::from_secs(self.engine.settings().await?.rollback_timeout_seconds);
        let last = from.min(definition.operations.len().saturating_sub(1));
        let mut failure = None;
        let started = tokio::time::Instant::now();
        for index in (0..=last).rev() {
            if definition.operations.is_empty() {
                break;
            }
            let remaining = timeout.saturating_sub(started.elapsed());
            let position = RunPosition::starting(store, &self.runner_id, index, definition.operations.len(), None, None);
            let step_context = context.within_rollback(position);
            let outcome = tokio::time::timeout(remaining, rollback_operation(definition, index, &step_context)).await;
            let error = match outcome {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => format!("rollback of operation {index} failed: {error}{AFTER_A_FAILED_ROLLBACK}"),
                Err(_) => {
                    self.engine.kill_statements(name).await?;
                    format!(
                        "rollback of operation {index} ran past the rollback timeout of {} s{AFTER_A_FAILED_ROLLBACK}",
                        timeout.as_secs()
                    )
                }
            };
            store.record_error(name, Some(index as i32), step_context.current_query_id().as_deref(), &error).await?;
            failure = Some(error);
            break;
        }
        match failure {
            None => {
                store.finish_run(name, &self.runner_id, Status::RolledBack, true).await?;
                tracing::info!(migration = %name, "rolled back");
            }
            Some(error) => {
                tracing::error!(migration = %name, %error, "rollback failed; the migration stays errored");
                store.finish_run(name, &self.runner_id, Status::Errored, false).await?;
            }
        }
        Ok(())
    }
}

/// Resolves once shutdown is signalled; never, if the sender is gone without signalling.
async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn stop_requested(record: &MigrationRecord) -> Option<StepEnd> {
    let by = record.stop_requested_by.clone()?;
    Some(StepEnd::Stopped { by, rollback: record.stop_and_rollback })
}

/// The parameters stored with the run, validated against the definition again (it may have changed).
fn stored_parameters(definition: &MigrationDefinition, record: &MigrationRecord) -> Result<Parameters> {
    let values = record.parameters.as_object().cloned().unwrap_or_default();
    Ok(Parameters::from_json(&definition.name, &definition.parameters, &values)?)
}

async fn run_operation(definition: &MigrationDefinition, index: usize, context: &MigrationContext) -> Result<()> {
    let operation = &definition.operations[index];
    match &operation.action {
        OperationAction::ClickHouse { sql, settings, timeout, .. } => {
            let sql = definition.render_clickhouse(sql, context)?;
            context.clickhouse_execute(&sql, &crate::clickhouse::QueryOptions { settings: settings.clone(), timeout: *timeout }).await
        }
        OperationAction::Postgres { sql, .. } => {
            let sql = definition.render_postgres(sql, context)?;
            sqlx::raw_sql(&sql).execute(&context.postgres).await?;
            Ok(())
        }
        OperationAction::Rust { run, .. } => run(context.clone()).await,
    }
}

async fn rollback_operation(definition: &MigrationDefinition, index: usize, context: &MigrationContext) -> Result<()> {
    let operation = &definition.operations[index];
    match &operation.action {
        OperationAction::ClickHouse { rollback, settings, .. } if !rollback.trim().is_empty() => {
            let sql = definition.render_clickhouse(rollback, context)?;
            context.clickhouse_execute(&sql, &crate::clickhouse::QueryOptions { settings: settings.clone(), timeout: None }).await
        }
        OperationAction::Postgres { rollback, .. } if !rollback.trim().is_empty() => {
            let sql = definition.render_postgres(rollback, context)?;
            sqlx::raw_sql(&sql).execute(&context.postgres).await?;
            Ok(())
        }
        OperationAction::Rust { rollback, .. } => rollback(context.clone()).await,
        _ => Ok(()),
    }
}
