//! What a running operation, rollback or check can reach: the databases, its parameters, and the means to
//! report progress, record query ids and save a checkpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tracing::Instrument;

use crate::clickhouse::{ClickHouse, QueryOptions};
use crate::cluster::{Cluster, ClusterNode, ReplicaState, ShardReplicas};
use crate::definition::{CheckOutcome, StepFn};
use crate::parameters::{ParameterValue, Parameters};
use crate::pressure;
use crate::preview::{clickhouse_footprint, partition_sizes, PartitionSize};
use crate::settings::RuntimeSettings;
use crate::store::Store;
use crate::{Error, Result};

/// Progress is written to Postgres at most this often (operation boundaries are always written).
const PROGRESS_WRITE_INTERVAL: Duration = Duration::from_millis(250);

/// How often a running statement's progress is read from `system.processes`.
const QUERY_PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

/// How often a mutation's progress is read from `system.mutations`.
const MUTATION_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How often the node a shard's work runs on is asked whether it still answers (a paused or cut-off node
/// would otherwise hold its statement, and the run, forever)...
const NODE_WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// ...and how long it may take to answer before the shard's work fails.
const NODE_SILENCE_LIMIT: Duration = Duration::from_secs(10);

/// How often a rollback waiting for ClickHouse to accept connections tries again.
const CLICKHOUSE_RECONNECT_INTERVAL: Duration = Duration::from_secs(1);

/// The waiting reason a rollback shows while ClickHouse refuses connections.
pub const WAITING_FOR_CLICKHOUSE: &str = "ClickHouse refuses connections; the rollback goes on once it answers";

/// How often a wait for inserts in flight asks the servers again.
const INSERTS_IN_FLIGHT_INTERVAL: Duration = Duration::from_millis(200);

/// How much earlier than amigo's clock says an insert may have begun and still count as begun before a
/// statement amigo sent: the time the statement took to reach the server, generously.
const STATEMENT_TRANSIT_MARGIN: Duration = Duration::from_secs(1);

/// How often a run ready to cut over copies what arrived meanwhile and asks whether staff let it cut over.
const CUTOVER_KEEP_UP_INTERVAL: Duration = Duration::from_secs(2);
/// How often a held run asks again whether the pause stands and whether its throttle check passes.
const HOLD_RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// While the units of [`MigrationContext::in_parallel`] run, their throttle check is asked this often in the
/// background (as gh-ost's throttler does), so that the next unit starts on a fresh reading instead of waiting
/// for a check of its own...
const THROTTLE_READING_INTERVAL: Duration = Duration::from_millis(500);

/// ...which stands for this long; an older one (a check slower than the interval) is asked again before the unit.
const THROTTLE_READING_LIFETIME: Duration = Duration::from_millis(1500);

/// The context handed to every step of a migration. Cheap to clone.
#[derive(Clone)]
pub struct MigrationContext {
    pub migration: String,
    pub clickhouse: ClickHouse,
    pub postgres: PgPool,
    /// The values the run started with; an adjustable parameter's value now is [`MigrationContext::integer_now`].
    pub parameters: Parameters,
    /// The run's parameter values as last read between two units of work, staff's adjustments included.
    adjusted: Arc<Mutex<Option<Parameters>>>,
    /// Every node of the product's ClickHouse, when it is a cluster.
    pub cluster: Option<Arc<Cluster>>,
    position: Option<Arc<RunPosition>>,
    /// Inside [`MigrationContext::on_every_shard`]: the shard whose replica `clickhouse` is.
    shard: Option<Arc<ShardRun>>,
    /// Set for a rollback: a statement ClickHouse refuses the connection for waits until it answers (the
    /// runner's rollback timeout bounds the wait), instead of failing the rollback.
    rolling_back: bool,
    /// Inside [`MigrationContext::in_parallel`]: the unit of work whose fraction done this context reports.
    unit: Option<Arc<UnitShare>>,
}

/// What the units of [`MigrationContext::in_parallel`] have done, in their weights: the operation's progress.
struct StreamShares {
    total: f64,
    /// The units finished, and the work done before.
    done: f64,
    /// Each unit in flight (by its place in the list) and the weight of it done.
    in_flight: BTreeMap<usize, f64>,
}

/// One unit of work of [`MigrationContext::in_parallel`] and its weight.
struct UnitShare {
    key: usize,
    weight: f64,
    shares: Arc<Mutex<StreamShares>>,
}

impl UnitShare {
    /// The operation's fraction done with this unit `fraction` (0.0 to 1.0) done.
    fn overall(&self, fraction: f64) -> f64 {
        let mut shares = self.shares.lock().expect("stream shares lock");
        shares.in_flight.insert(self.key, self.weight * fraction.clamp(0.0, 1.0));
        (shares.done + shares.in_flight.values().sum::<f64>()) / shares.total
    }

    /// The operation's fraction done once this unit is done.
    fn finish(&self) -> f64 {
        let mut shares = self.shares.lock().expect("stream shares lock");
        shares.in_flight.remove(&self.key);
        shares.done += self.weight;
        (shares.done + shares.in_flight.values().sum::<f64>()) / shares.total
    }
}

/// One shard's part of an operation that runs on every shard.
struct ShardRun {
    shard: u32,
    /// `host:port` of the replica its statements run on.
    node: String,
    state: Mutex<PositionState>,
    /// Every shard's fraction done: the operation's progress is their mean.
    fractions: Arc<Mutex<BTreeMap<u32, f64>>>,
    /// Every shard's rows copied so far: the operation's count is their sum.
    rows_copied: Arc<Mutex<BTreeMap<u32, u64>>>,
}

/// Where a run is, shared between the runner and the step it is executing.
pub(crate) struct RunPosition {
    pub store: Store,
    pub runner_id: String,
    pub operation_index: usize,
    pub operation_count: usize,
    /// The definition's throttle check, asked by [`MigrationContext::hold_between_units`].
    pub throttle: Option<StepFn<CheckOutcome>>,
    pub state: Mutex<PositionState>,
}

pub(crate) struct PositionState {
    pub query_id: String,
    pub checkpoint: Option<serde_json::Value>,
    pub fraction: f64,
    pub last_write: Option<Instant>,
}

impl RunPosition {
    /// The position at the start of operation `operation_index`, continuing from `checkpoint` if given.
    pub fn starting(
        store: &Store,
        runner_id: &str,
        operation_index: usize,
        operation_count: usize,
        checkpoint: Option<serde_json::Value>,
        throttle: Option<StepFn<CheckOutcome>>,
    ) -> Arc<RunPosition> {
        Arc::new(RunPosition {
            store: store.clone(),
            runner_id: runner_id.to_string(),
            operation_index,
            operation_count,
            throttle,
            state: Mutex::new(PositionState { query_id: String::new(), checkpoint, fraction: 0.0, last_write: None }),
        })
    }

    /// Overall progress in percent: operations done plus the fraction of the current one.
    pub fn percent(&self, fraction: f64) -> u8 {
        if self.operation_count == 0 {
            return 100;
        }
        let done = self.operation_index as f64 + fraction.clamp(0.0, 1.0);
        ((done / self.operation_count as f64) * 100.0).floor().min(100.0) as u8
    }
}

impl MigrationContext {
    /// A context for checks, outside any run.
    pub(crate) fn for_checks(
        migration: &str,
        clickhouse: ClickHouse,
        cluster: Option<Arc<Cluster>>,
        postgres: PgPool,
        parameters: Parameters,
    ) -> MigrationContext {
        MigrationContext {
            migration: migration.into(),
            clickhouse,
            postgres,
            parameters,
            adjusted: Arc::new(Mutex::new(None)),
            cluster,
            position: None,
            shard: None,
            rolling_back: false,
            unit: None,
        }
    }

    /// The value of parameter `name` now: as staff last adjusted it, read at the latest unit of work's start
    /// ([`MigrationContext::hold_between_units`]), else as the run started with it.
    pub fn value_now(&self, name: &str) -> Option<ParameterValue> {
        let adjusted = self.adjusted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        adjusted.as_ref().and_then(|values| values.get(name)).or_else(|| self.parameters.get(name)).cloned()
    }

    /// [`MigrationContext::value_now`] of an integer parameter; panics if the migration does not declare it (a
    /// bug in its definition), like [`Parameters::integer`].
    pub fn integer_now(&self, name: &str) -> i64 {
        match self.value_now(name) {
            Some(ParameterValue::Integer(value)) => value,
            _ => self.parameters.integer(name),
        }
    }

    pub(crate) fn within_run(&self, position: Arc<RunPosition>) -> MigrationContext {
        MigrationContext { position: Some(position), rolling_back: false, ..self.clone() }
    }

    pub(crate) fn within_rollback(&self, position: Arc<RunPosition>) -> MigrationContext {
        MigrationContext { position: Some(position), rolling_back: true, ..self.clone() }
    }

    /// The checkpoint saved by an earlier attempt of the current operation, if any.
    pub fn checkpoint(&self) -> Option<serde_json::Value> {
        if let Some(shard) = &self.shard {
            return shard.state.lock().expect("shard lock").checkpoint.clone();
        }
        let position = self.position.as_ref()?;
        position.state.lock().expect("position lock").checkpoint.clone()
    }

    /// Saves how far the current operation got, so that a resume continues from there.
    pub async fn save_checkpoint(&self, checkpoint: serde_json::Value) -> Result<()> {
        let Some(position) = &self.position else { return Ok(()) };
        if let Some(shard) = &self.shard {
            shard.state.lock().expect("shard lock").checkpoint = Some(checkpoint.clone());
            return position.store.save_shard_checkpoint(&self.migration, &position.runner_id, shard.shard, &checkpoint).await;
        }
        position.state.lock().expect("position lock").checkpoint = Some(checkpoint.clone());
        position.store.save_checkpoint(&self.migration, &position.runner_id, Some(&checkpoint)).await
    }

    /// Records how many rows the current operation has copied so far, in all (for `/metrics`). Operations that
    /// know it call this; a resumed operation counts what its checkpoint says was copied before.
    pub async fn record_rows_copied(&self, rows: u64) -> Result<()> {
        let Some(position) = &self.position else { return Ok(()) };
        let rows = match &self.shard {
            // Each shard counts its own rows; the operation has copied their sum.
            Some(shard) => {
                let mut rows_copied = shard.rows_copied.lock().expect("rows copied lock");
                rows_copied.insert(shard.shard, rows);
                rows_copied.values().sum()
            }
            None => rows,
        };
        position.store.record_rows_copied(&self.migration, position.operation_index, rows).await
    }

    /// Records the partitions the current operation works through (on this shard, inside
    /// [`MigrationContext::on_every_shard`]), those in `done` already done: the page shows them as its progress.
    pub async fn track_partitions(&self, partitions: &[PartitionSize], done: &BTreeSet<String>) -> Result<()> {
        let Some(position) = &self.position else { return Ok(()) };
        position.store.track_partitions(&self.migration, position.operation_index, self.shard_number(), partitions, done).await
    }

    /// Marks one of the partitions [`MigrationContext::track_partitions`] recorded done, in `took`.
    pub async fn partition_done(&self, partition_id: &str, took: Duration) -> Result<()> {
        let Some(position) = &self.position else { return Ok(()) };
        position
            .store
            .partition_done(&self.migration, position.operation_index, self.shard_number(), partition_id, took.as_secs_f64())
            .await
    }

    /// Records that the run keeps `table` (in the product's database) as the backup of what it replaced, with
    /// its size on disk now (on this node): staff can roll the completed migration back from it, or finalize it
    /// (drop it). `None` records that it is gone (a rollback swapped it back).
    pub async fn record_backup(&self, table: Option<&str>) -> Result<()> {
        let Some(position) = &self.position else { return Ok(()) };
        let backup = match table {
            Some(table) => Some((table, clickhouse_footprint(table, &partition_sizes(&self.clickhouse, table).await?).bytes)),
            None => None,
        };
        position.store.record_backup(&self.migration, &position.runner_id, backup).await
    }

    /// Records one partition (or other unit) copied by `INSERT … SELECT`: its rows, its bytes on disk and how long
    /// the statement took. Plans estimate a copy's duration from these; a sample that cannot be written is only
    /// logged, since the copy itself succeeded.
    pub async fn record_copy_sample(&self, rows: u64, bytes: u64, took: Duration) {
        let Some(position) = &self.position else { return };
        if let Err(error) = position.store.record_copy_sample(&self.migration, rows, bytes, took.as_secs_f64()).await {
            tracing::warn!(%error, "the copy's speed was not recorded");
        }
    }

    /// Reports how much of the current operation is done (0.0 to 1.0), or inside
    /// [`MigrationContext::in_parallel`] of its unit of work; written at most every 250 ms.
    pub async fn report_progress(&self, fraction: f64) -> Result<()> {
        if self.position.is_none() {
            return Ok(());
        }
        match &self.unit {
            Some(unit) => self.report_overall_progress(unit.overall(fraction)).await,
            None => self.report_overall_progress(fraction).await,
        }
    }

    /// [`MigrationContext::report_progress`] of the operation as a whole.
    async fn report_overall_progress(&self, fraction: f64) -> Result<()> {
        let Some(position) = &self.position else { return Ok(()) };
        if let Some(shard) = &self.shard {
            let query_id = {
                let mut state = shard.state.lock().expect("shard lock");
                state.fraction = fraction;
                if state.last_write.is_some_and(|written| written.elapsed() < PROGRESS_WRITE_INTERVAL) {
                    None
                } else {
                    state.last_write = Some(Instant::now());
                    Some(state.query_id.clone())
                }
            };
            let mean = {
                let mut fractions = shard.fractions.lock().expect("fractions lock");
                fractions.insert(shard.shard, fraction.clamp(0.0, 1.0));
                fractions.values().sum::<f64>() / fractions.len().max(1) as f64
            };
            let Some(query_id) = query_id else { return Ok(()) };
            position.store.record_shard_position(&self.migration, &position.runner_id, shard.shard, percent(fraction), &query_id).await?;
            return report_operation_progress(&self.migration, position, mean).await;
        }
        report_operation_progress(&self.migration, position, fraction).await
    }

    /// Runs one ClickHouse statement under a fresh query id, recorded as the current query id before it is
    /// sent, so that a stop can kill it and the page can show it. While it runs, the operation's progress
    /// follows the rows it has read (`system.processes`) against the rows it will read.
    pub async fn clickhouse_execute(&self, sql: &str, options: &QueryOptions) -> Result<()> {
        self.clickhouse_execute_part(sql, options, 0.0..1.0).await
    }

    /// [`MigrationContext::clickhouse_execute`] for a statement that is one part of its operation: its
    /// progress moves the operation's from `span.start` to `span.end` (e.g. one partition of many).
    pub async fn clickhouse_execute_part(&self, sql: &str, options: &QueryOptions, span: std::ops::Range<f64>) -> Result<()> {
        let query_id = self.new_query_id();
        let statement_span = tracing::info_span!("statement", query_id = %query_id);
        async {
            self.record_query_id(&query_id).await?;
            let started = Instant::now();
            let statement = self.send_statement(sql, &query_id, options);
            tokio::pin!(statement);
            let mut poll = tokio::time::interval(QUERY_PROGRESS_INTERVAL);
            let outcome = loop {
                tokio::select! {
                    outcome = &mut statement => break outcome,
                    _ = poll.tick() => {
                        if let Ok(Some(progress)) = self.clickhouse.query_progress(&query_id).await {
                            if progress.total_rows_approx > 0 {
                                let done = (progress.read_rows as f64 / progress.total_rows_approx as f64).min(1.0);
                                self.report_progress(span.start + (span.end - span.start) * done).await?;
                            }
                        }
                    }
                }
            };
            let elapsed_ms = started.elapsed().as_millis() as u64;
            match &outcome {
                Ok(()) => tracing::info!(elapsed_ms, "statement finished"),
                Err(error) => tracing::warn!(elapsed_ms, %error, "statement failed"),
            }
            outcome
        }
        .instrument(statement_span)
        .await
    }

    /// Sends one statement. During a rollback, while ClickHouse refuses the connection (it is down or restarting:
    /// the statement never reached it, so sending it again is safe), waits for it with the wait shown as the
    /// run's waiting reason.
    async fn send_statement(&self, sql: &str, query_id: &str, options: &QueryOptions) -> Result<()> {
        let mut waiting = false;
        loop {
            let outcome = self.clickhouse.execute(sql, query_id, options).await;
            match (&outcome, &self.position) {
                (Err(error), Some(position)) if self.rolling_back && error.is_connection_refused() => {
                    if !waiting {
                        tracing::warn!(%error, "ClickHouse refuses connections; the rollback waits for it");
                        position.store.set_waiting_reason(&self.migration, &position.runner_id, Some(WAITING_FOR_CLICKHOUSE)).await?;
                        waiting = true;
                    }
                    tokio::time::sleep(CLICKHOUSE_RECONNECT_INTERVAL).await;
                }
                (_, Some(position)) if waiting => {
                    position.store.set_waiting_reason(&self.migration, &position.runner_id, None).await?;
                    return outcome;
                }
                _ => return outcome,
            }
        }
    }

    /// Waits until mutation `mutation_id` of `table` (in the product's database) has rewritten every part. Its
    /// progress moves the operation's from `span.start` to `span.end` as the parts left to do fall from
    /// `parts_total` to none. Fails when the mutation disappears (it was killed) or, on servers that report
    /// it (19.3 and later), when rewriting a part failed.
    pub async fn wait_for_mutation(&self, table: &str, mutation_id: &str, parts_total: i64, span: std::ops::Range<f64>) -> Result<()> {
        loop {
            let mutations = self.clickhouse.mutations(table).await?;
            let Some(status) = mutations.into_iter().find(|mutation| mutation.mutation_id == mutation_id) else {
                return Err(Error::Migration(format!("mutation {mutation_id} of {table} is gone from system.mutations: it was killed")));
            };
            if status.is_done != 0 {
                return self.report_progress(span.end).await;
            }
            if !status.latest_fail_reason.is_empty() {
                return Err(Error::Migration(format!(
                    "mutation {mutation_id} of {table} cannot rewrite a part: {}",
                    status.latest_fail_reason
                )));
            }
            let done = 1.0 - status.parts_to_do as f64 / parts_total.max(1) as f64;
            self.report_progress(span.start + (span.end - span.start) * done.clamp(0.0, 1.0)).await?;
            tokio::time::sleep(MUTATION_POLL_INTERVAL).await;
        }
    }

    /// A query id naming the migration and operation, unique per statement ([`query_id`]).
    pub fn new_query_id(&self) -> String {
        let operation = self.position.as_ref().map_or(0, |position| position.operation_index);
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let kind = if self.rolling_back { "undo" } else { "op" };
        statement_id(
            self.clickhouse.database(),
            &self.migration,
            kind,
            operation,
            self.shard.as_ref().map(|shard| shard.shard),
            &unique[..12],
        )
    }

    /// Records `query_id` as the statement now running.
    pub async fn record_query_id(&self, query_id: &str) -> Result<()> {
        let Some(position) = &self.position else { return Ok(()) };
        if let Some(shard) = &self.shard {
            let fraction = {
                let mut state = shard.state.lock().expect("shard lock");
                state.query_id = query_id.to_string();
                state.last_write = Some(Instant::now());
                state.fraction
            };
            return position
                .store
                .record_shard_position(&self.migration, &position.runner_id, shard.shard, percent(fraction), query_id)
                .await;
        }
        let percent = {
            let mut state = position.state.lock().expect("position lock");
            state.query_id = query_id.to_string();
            state.last_write = Some(Instant::now());
            position.percent(state.fraction)
        };
        position.store.record_position(&self.migration, &position.runner_id, position.operation_index, percent, query_id).await
    }

    /// Whether ClickHouse is under pressure on `tables` ([`pressure::clickhouse_pressure`]) and, on a cluster,
    /// whether a replica lags behind its shard by more than `max_replica_lag_seconds`, with the settings in force
    /// (read at each call, so that a change applies to the next check; the defaults outside a run).
    pub async fn clickhouse_pressure(&self, tables: &[&str]) -> Result<CheckOutcome> {
        let settings = match &self.position {
            Some(position) => RuntimeSettings::from_stored(&position.store.settings().await?),
            None => RuntimeSettings::default(),
        };
        let outcome = pressure::clickhouse_pressure(&self.clickhouse, tables, settings.min_free_disk_percent).await?;
        let (CheckOutcome::Pass, Some(cluster)) = (&outcome, &self.cluster) else { return Ok(outcome) };
        Ok(pressure::replica_lag(cluster, settings.max_replica_lag_seconds).await)
    }

    /// Holds the run between two units of work (e.g. partitions, batches), as operations call it there: while
    /// staff paused the migration (recorded as held, nothing running, the lease kept), then while its throttle
    /// check fails (its reason shown as the run's waiting reason). Returns at once when neither holds it; a
    /// stop still interrupts the wait. It also takes in staff's adjustments of the parameters
    /// ([`MigrationContext::integer_now`]).
    pub async fn hold_between_units(&self) -> Result<()> {
        let Some(position) = &self.position else { return Ok(()) };
        let (mut held, mut shown): (bool, Option<String>) = (false, None);
        loop {
            let (paused_by, reason) = self.what_holds(held, None).await?;
            if paused_by.is_some() != held {
                held = paused_by.is_some();
                position.store.set_held(&self.migration, &position.runner_id, held).await?;
                match &paused_by {
                    Some(by) => tracing::info!(migration = %self.migration, %by, "paused between two units of work"),
                    None => tracing::info!(migration = %self.migration, "continuing"),
                }
            }
            if reason != shown {
                position.store.set_waiting_reason(&self.migration, &position.runner_id, reason.as_deref()).await?;
                if let Some(reason) = &reason {
                    tracing::info!(migration = %self.migration, %reason, "waiting until the pressure clears");
                }
                shown = reason;
            }
            if !held && shown.is_none() {
                return Ok(());
            }
            tokio::time::sleep(HOLD_RECHECK_INTERVAL).await;
        }
    }

    /// Whether something would hold the run before its next unit of work ([`MigrationContext::hold_between_units`])
    /// now, without showing it: asked while other units still run, which finish before the run is held.
    /// `reading` is the throttle check's outcome when a fresh one is at hand.
    async fn must_hold(&self, reading: Option<&CheckOutcome>) -> Result<bool> {
        let (paused_by, reason) = self.what_holds(false, reading).await?;
        Ok(paused_by.is_some() || reason.is_some())
    }

    /// Who paused the run, and why its throttle check holds it (not asked while `held`, nor when `reading` is a
    /// fresh outcome of it); takes in staff's adjustments of the parameters on the way.
    async fn what_holds(&self, held: bool, reading: Option<&CheckOutcome>) -> Result<(Option<String>, Option<String>)> {
        let Some(position) = &self.position else { return Ok((None, None)) };
        // The throttle check runs beside the read of the pause, and its outcome is dropped when the run is paused.
        let throttle = async {
            match reading {
                _ if held => Ok(None),
                Some(reading) => Ok(Some(reading.clone())),
                None => self.throttle_outcome().await,
            }
        };
        let (between_units, throttled) = tokio::join!(position.store.between_units(&self.migration), throttle);
        let (paused_by, values) = between_units?;
        if let Ok(values) = serde_json::from_value::<Parameters>(values) {
            *self.adjusted.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(values);
        }
        if paused_by.is_some() {
            return Ok((paused_by, None));
        }
        let reason = match throttled? {
            Some(CheckOutcome::Fail(reason)) => Some(reason),
            Some(CheckOutcome::Pass) | None => None,
        };
        Ok((paused_by, reason))
    }

    /// What the definition's throttle check says now, if it has one.
    async fn throttle_outcome(&self) -> Result<Option<CheckOutcome>> {
        match self.position.as_ref().and_then(|position| position.throttle.as_ref()) {
            Some(throttle) => throttle(self.clone()).await.map(Some),
            None => Ok(None),
        }
    }

    /// Runs `work` on each of `units` (each with its weight in the operation's progress, e.g. its rows), as many
    /// at once as `streams` says (asked again before each unit, so that an adjusted parameter takes effect at
    /// the next one), and returns once all are done or as soon as one fails (the runner then kills every
    /// statement of the migration). `work` gets a context whose progress reports are its unit's fraction done
    /// (the operation's progress counts every stream: `already_done` weight plus each unit's share), and the
    /// number of the stream it runs on, below the largest parallelism asked, none in use by another unit.
    /// Before each unit the run is held as [`MigrationContext::hold_between_units`] says, once the units in
    /// flight have finished: a pause lets every stream finish its unit. While units run, the throttle check is
    /// read in the background ([`THROTTLE_READING_INTERVAL`]).
    pub async fn in_parallel<Unit, Streams, Work, WorkFuture>(
        &self,
        units: Vec<(Unit, u64)>,
        already_done: u64,
        streams: Streams,
        work: Work,
    ) -> Result<()>
    where
        Streams: Fn(&MigrationContext) -> usize,
        Work: Fn(MigrationContext, usize, Unit) -> WorkFuture,
        WorkFuture: Future<Output = Result<()>>,
    {
        use futures::stream::{FuturesUnordered, StreamExt};
        let total = already_done + units.iter().map(|(_, weight)| weight).sum::<u64>();
        let shares =
            Arc::new(Mutex::new(StreamShares { total: total.max(1) as f64, done: already_done as f64, in_flight: BTreeMap::new() }));
        let mut queue = units.into_iter().enumerate().peekable();
        let mut running = FuturesUnordered::new();
        let mut busy: BTreeSet<usize> = BTreeSet::new();
        let work = &work;
        let throttled = self.position.as_ref().is_some_and(|position| position.throttle.is_some());
        let mut reading: Option<(Instant, CheckOutcome)> = None;
        let mut check: Option<futures::future::BoxFuture<'_, Result<Option<CheckOutcome>>>> = None;
        let mut next_check = tokio::time::Instant::now() + THROTTLE_READING_INTERVAL;
        loop {
            if queue.peek().is_some() && running.len() < streams(self).max(1) {
                let fresh = reading.as_ref().filter(|(at, _)| at.elapsed() < THROTTLE_READING_LIFETIME).map(|(_, outcome)| outcome);
                if running.is_empty() {
                    self.hold_between_units().await?;
                } else if self.must_hold(fresh).await? {
                    while let Some((stream, outcome)) = running.next().await {
                        busy.remove(&stream);
                        outcome?;
                    }
                    (reading, check) = (None, None);
                    continue;
                }
                if running.len() >= streams(self).max(1) {
                    continue;
                }
                let Some((key, (unit, weight))) = queue.next() else { continue };
                let stream = (0..).find(|stream| !busy.contains(stream)).expect("a free stream");
                busy.insert(stream);
                let share = Arc::new(UnitShare { key, weight: weight as f64, shares: shares.clone() });
                let unit_context = MigrationContext { unit: Some(share.clone()), ..self.clone() };
                let parent = self.clone();
                running.push(async move {
                    let outcome = match work(unit_context, stream, unit).await {
                        Ok(()) => parent.report_overall_progress(share.finish()).await,
                        Err(error) => Err(error),
                    };
                    (stream, outcome)
                });
                continue;
            }
            tokio::select! {
                finished = running.next() => match finished {
                    Some((stream, outcome)) => {
                        busy.remove(&stream);
                        outcome?;
                    }
                    None => return Ok(()),
                },
                outcome = async { check.as_mut().expect("a throttle check in flight").await }, if check.is_some() => {
                    check = None;
                    reading = outcome?.map(|outcome| (Instant::now(), outcome));
                }
                _ = tokio::time::sleep_until(next_check), if throttled && check.is_none() => {
                    check = Some(Box::pin(self.throttle_outcome()));
                    next_check = tokio::time::Instant::now() + THROTTLE_READING_INTERVAL;
                }
            }
        }
    }

    /// Holds a run whose cut-over waits for staff: marks it ready to cut over, then until someone clicks Cut over
    /// calls `keep_up` (which copies what arrived meanwhile) every few seconds, pausing as staff ask; returns once
    /// approved. Fails, resumable, when the setting `cutover_timeout_hours` (other than 0) passes first.
    pub async fn await_cutover<KeepUp, Kept>(&self, mut keep_up: KeepUp) -> Result<()>
    where
        KeepUp: FnMut() -> Kept,
        Kept: Future<Output = Result<()>>,
    {
        let Some(position) = &self.position else { return Ok(()) };
        position.store.set_cutover_ready(&self.migration, &position.runner_id, true).await?;
        let ready = Instant::now();
        loop {
            if let Some(by) = position.store.cutover_approved_by(&self.migration).await? {
                tracing::info!(migration = %self.migration, %by, "cutting over");
                return position.store.set_cutover_ready(&self.migration, &position.runner_id, false).await;
            }
            let hours = RuntimeSettings::from_stored(&position.store.settings().await?).cutover_timeout_hours;
            if hours > 0 && ready.elapsed() > Duration::from_secs(hours * 3600) {
                return Err(Error::Migration(format!(
                    "nobody cut it over within {hours} h (the setting cutover_timeout_hours); resume it to wait again"
                )));
            }
            self.hold_between_units().await?;
            keep_up().await?;
            tokio::time::sleep(CUTOVER_KEEP_UP_INTERVAL).await;
        }
    }

    /// Waits until no insert that began before `since` (the moment amigo sent a statement) is still running on
    /// any node (every node of a cluster, or the server), showing the wait as the run's waiting reason. After a
    /// swap in an Atomic database such inserts still write into the table renamed away; once none is left,
    /// what that table received can be copied over whole.
    pub async fn wait_for_inserts_begun_before(&self, since: Instant) -> Result<()> {
        let nodes: Vec<ClickHouse> = match &self.cluster {
            Some(cluster) => cluster.nodes().iter().map(|node| node.clickhouse.clone()).collect(),
            None => vec![self.clickhouse.clone()],
        };
        let mut shown = false;
        loop {
            let running_for = since.elapsed().saturating_sub(STATEMENT_TRANSIT_MARGIN).as_secs_f64();
            let mut in_flight = 0;
            for node in &nodes {
                in_flight += node.inserts_running_for(running_for).await?;
            }
            if in_flight == 0 {
                if shown {
                    self.show_waiting_reason(None).await?;
                }
                return Ok(());
            }
            if !shown {
                let reason = format!("{in_flight} insert(s) begun before the swap are still running; their rows are copied once they end");
                self.show_waiting_reason(Some(&reason)).await?;
                shown = true;
            }
            tokio::time::sleep(INSERTS_IN_FLIGHT_INTERVAL).await;
        }
    }

    /// Shows `reason` as the run's waiting reason (`None` clears it).
    async fn show_waiting_reason(&self, reason: Option<&str>) -> Result<()> {
        let Some(position) = &self.position else { return Ok(()) };
        position.store.set_waiting_reason(&self.migration, &position.runner_id, reason).await
    }

    /// The query id currently recorded.
    pub fn current_query_id(&self) -> Option<String> {
        if let Some(shard) = &self.shard {
            return Some(shard.state.lock().expect("shard lock").query_id.clone()).filter(|id| !id.is_empty());
        }
        let position = self.position.as_ref()?;
        Some(position.state.lock().expect("position lock").query_id.clone()).filter(|id| !id.is_empty())
    }

    /// Runs `work` on every shard of the cluster at once, each with a context whose `clickhouse` is one
    /// answering replica of its shard (replication brings the result to the others) and whose progress, query
    /// ids and checkpoints are the shard's own, recorded in Postgres; the operation's progress is the shards'
    /// mean. On a single server, runs `work` once with this context. Fails as soon as one shard fails; the
    /// runner then kills every shard's query, as it kills the query of any failed operation.
    pub async fn on_every_shard<Work, WorkFuture>(&self, work: Work) -> Result<()>
    where
        Work: Fn(MigrationContext) -> WorkFuture,
        WorkFuture: Future<Output = Result<()>>,
    {
        let Some(cluster) = &self.cluster else { return work(self.clone()).await };
        let fractions = Arc::new(Mutex::new(BTreeMap::new()));
        let rows_copied = Arc::new(Mutex::new(BTreeMap::new()));
        let mut shard_contexts = Vec::new();
        for ShardReplicas { node, others } in cluster.choose_replicas().await? {
            let checkpoint = match &self.position {
                Some(position) => {
                    position
                        .store
                        .begin_shard(&self.migration, &position.runner_id, node.shard, position.operation_index, &node.address, &others)
                        .await?
                }
                None => None,
            };
            fractions.lock().expect("fractions lock").insert(node.shard, 0.0);
            let state = PositionState { query_id: String::new(), checkpoint, fraction: 0.0, last_write: None };
            let shard = ShardRun {
                shard: node.shard,
                node: node.address.clone(),
                state: Mutex::new(state),
                fractions: fractions.clone(),
                rows_copied: rows_copied.clone(),
            };
            let context = MigrationContext { clickhouse: node.clickhouse.clone(), shard: Some(Arc::new(shard)), ..self.clone() };
            shard_contexts.push((context, node, others));
        }
        let work = &work;
        futures::future::try_join_all(shard_contexts.into_iter().map(|(context, node, others)| async move {
            let shard = context.shard.clone().expect("a shard context");
            let outcome = tokio::select! {
                outcome = work(context.clone()) => match outcome {
                    Ok(()) => context.finish_shard().await,
                    Err(error) => Err(error),
                },
                silent = context.clickhouse.stops_answering(NODE_WATCH_INTERVAL, NODE_SILENCE_LIMIT) => Err(silent),
                never = context.watch_other_replicas(cluster, &node, others) => match never {},
            };
            outcome.map_err(|error| Error::OnShard { shard: shard.shard, node: shard.node.clone(), source: Box::new(error) })
        }))
        .await?;
        Ok(())
    }

    /// Runs `sql` on every node of the cluster in turn, each under its own query id, or once on a single
    /// server: for statements about tables that are not replicated (a `Distributed` table), which
    /// `ON CLUSTER` refuses where shards replicate internally. Every node must answer.
    pub async fn clickhouse_execute_on_every_node(&self, sql: &str, options: &QueryOptions) -> Result<()> {
        let Some(cluster) = &self.cluster else { return self.clickhouse_execute(sql, options).await };
        for node in cluster.nodes() {
            let on_node = MigrationContext { clickhouse: node.clickhouse.clone(), ..self.clone() };
            on_node.clickhouse_execute(sql, options).await.map_err(|error| Error::OnShard {
                shard: node.shard,
                node: node.address.clone(),
                source: Box::new(error),
            })?;
        }
        Ok(())
    }

    /// Records what the other replicas of this context's shard say, every [`NODE_WATCH_INTERVAL`], whenever it
    /// changed since `last`; never returns (a failed write is logged, and the next reading tries again).
    async fn watch_other_replicas(&self, cluster: &Cluster, node: &ClusterNode, mut last: Vec<ReplicaState>) -> std::convert::Infallible {
        // Outside a run (a plan's checks) there is nothing to record.
        let (Some(position), Some(shard)) = (&self.position, &self.shard) else { return std::future::pending().await };
        loop {
            tokio::time::sleep(NODE_WATCH_INTERVAL).await;
            let now = cluster.other_replicas(node).await;
            if now == last {
                continue;
            }
            match position.store.record_shard_replicas(&self.migration, &position.runner_id, shard.shard, &now).await {
                Ok(()) => last = now,
                Err(error) => {
                    tracing::warn!(migration = %self.migration, shard = shard.shard, %error, "cannot record the shard's replicas")
                }
            }
        }
    }

    /// The shard this context's statements run on, inside [`MigrationContext::on_every_shard`]; 0 on a single
    /// server.
    pub fn shard_number(&self) -> u32 {
        self.shard.as_ref().map_or(0, |shard| shard.shard)
    }

    /// Records a shard's part of the operation as done (the write is never skipped as too soon).
    async fn finish_shard(&self) -> Result<()> {
        if let Some(shard) = &self.shard {
            shard.state.lock().expect("shard lock").last_write = None;
        }
        self.report_progress(1.0).await
    }
}

/// The query id of a statement of operation `operation` of `migration` run for the product database `database`:
/// `amigo-<migration>-op<operation>-` (`-undo<operation>-` in its rollback; with `shard<n>-` on a cluster), the
/// instance's tag, then `unique`.
pub fn query_id(database: &str, migration: &str, operation: usize, shard: Option<u32>, unique: &str) -> String {
    statement_id(database, migration, "op", operation, shard, unique)
}

fn statement_id(database: &str, migration: &str, kind: &str, operation: usize, shard: Option<u32>, unique: &str) -> String {
    let tag = instance_tag(database);
    match shard {
        Some(shard) => format!("amigo-{migration}-{kind}{operation}-shard{shard}-{tag}{unique}"),
        None => format!("amigo-{migration}-{kind}{operation}-{tag}{unique}"),
    }
}

/// What tells this instance's statements from those of another instance (another product database) on the same
/// server running a migration of the same name: six hex digits of a hash of the database's name, at the start of
/// the id's unique part (FNV-1a, stable across builds).
fn instance_tag(database: &str) -> String {
    let hash = database.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("{:06x}", hash >> 40)
}

/// What picks statements of `migration` run for the product database `database` out of `system.processes`: the
/// beginning of their query ids, and the tag the ids hold. Every stream's, whatever was recorded, so that a stop
/// kills them all; with `rollbacks`, a rollback's too. A kill ClickHouse takes late (a paused server answers it
/// once it is back) then cannot end the rollback that began meanwhile.
pub(crate) fn statements_of(migration: &str, database: &str, rollbacks: bool) -> (String, String) {
    let prefix = if rollbacks { format!("amigo-{migration}-") } else { format!("amigo-{migration}-op") };
    (prefix, format!("-{}", instance_tag(database)))
}

/// A fraction done (0.0 to 1.0) in whole percent.
fn percent(fraction: f64) -> u8 {
    (fraction.clamp(0.0, 1.0) * 100.0).floor() as u8
}

/// Reports how much of the current operation is done, as a whole; written at most every 250 ms.
async fn report_operation_progress(migration: &str, position: &RunPosition, fraction: f64) -> Result<()> {
    let (percent, query_id) = {
        let mut state = position.state.lock().expect("position lock");
        state.fraction = fraction;
        if state.last_write.is_some_and(|written| written.elapsed() < PROGRESS_WRITE_INTERVAL) {
            return Ok(());
        }
        state.last_write = Some(Instant::now());
        (position.percent(fraction), state.query_id.clone())
    };
    position.store.record_position(migration, &position.runner_id, position.operation_index, percent, &query_id).await
}
