//! amigo's migration engine: migration state in Postgres, the data it changes in ClickHouse.
//!
//! This crate knows nothing of HTTP or Leptos, and no product: a product hands it its migrations, written in
//! Rust ([`definition`], [`recipes`]) and as files ([`loader`]), at [`Engine::connect`]. The web server and the
//! CLI drive it through [`Engine`]'s verbs (list, plan, start, pause, continue, adjust, cut over, stop,
//! rollback, resume, finalize, the escape hatches, settings); a [`runner::Runner`] executes what they queue.
//!
//! The core is the state machine ([`status`]), the store of migration state in Postgres ([`store`], read as
//! [`record`]s), the runner and what an operation reaches ([`context`], [`clickhouse`] with the server's
//! [`capabilities`], [`cluster`]); the recipes, [`tables`] and [`pressure`] are built on it.

pub mod accounts;
pub mod capabilities;
mod changes;
pub mod clickhouse;
pub mod cluster;
pub mod context;
pub mod definition;
pub mod error;
#[cfg(any(test, feature = "testing"))]
pub mod input_properties;
pub mod loader;
pub mod metrics;
pub mod notifications;
pub mod parameters;
pub mod plan;
pub mod pressure;
pub mod preview;
pub mod recipes;
pub mod record;
pub mod runner;
pub mod scaffold;
pub mod settings;
pub use amigo_state as status;
pub mod store;
pub mod syntax;
pub mod tables;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod upgrade;
pub mod version;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;

pub use error::{Error, Result};

use crate::clickhouse::ClickHouse;
use crate::cluster::Cluster;
use crate::context::MigrationContext;
use crate::definition::MigrationDefinition;
use crate::parameters::{ParameterSpec, Parameters};
use crate::record::{AuditEntry, MigrationError, MigrationRecord};
use crate::settings::RuntimeSettings;
use crate::status::{Action, Phase, Status};
use crate::store::{RunRequest, Store};
use crate::upgrade::UpgradeCheck;
use crate::version::Version;

/// The actor recorded for what the engine decides by itself.
pub const ENGINE_ACTOR: &str = "amigo";

/// Where the engine finds its databases, which amigo version this instance runs, and how fast runners must
/// prove they are alive.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub database_url: String,
    pub clickhouse_url: String,
    pub clickhouse_database: String,
    /// The cluster (in `system.clusters`) the product's ClickHouse is, or `None` for a single server.
    pub clickhouse_cluster: Option<String>,
    /// Where the cluster's nodes serve HTTP: their TCP port plus this offset, or (`None`) the port of
    /// `clickhouse_url` on every node's host.
    pub clickhouse_http_port_offset: Option<i32>,
    /// The version migrations' version ranges and the upgrade gate are checked against.
    pub instance_version: Version,
    /// A runner whose heartbeat is older than this is taken for dead.
    pub lease_timeout: Duration,
    /// A folder of the product's migration files (`NAME.toml`, see [`loader`]), loaded next to the definitions
    /// compiled in.
    pub migrations_dir: Option<PathBuf>,
}

impl EngineConfig {
    pub fn new(database_url: &str, clickhouse_url: &str, clickhouse_database: &str) -> EngineConfig {
        EngineConfig {
            database_url: database_url.into(),
            clickhouse_url: clickhouse_url.into(),
            clickhouse_database: clickhouse_database.into(),
            clickhouse_cluster: None,
            clickhouse_http_port_offset: None,
            instance_version: Version::parse(env!("CARGO_PKG_VERSION")).expect("the crate version is a version"),
            lease_timeout: Duration::from_secs(10),
            migrations_dir: None,
        }
    }

    /// Runners renew their lease five times per lease timeout.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.lease_timeout / 5).max(Duration::from_millis(100))
    }
}

/// A migration's recorded state with what its definition says about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MigrationOverview {
    #[serde(flatten)]
    pub record: MigrationRecord,
    pub operation_count: usize,
    /// The description of the operation at `current_operation_index`.
    pub current_operation: Option<String>,
    pub depends_on: Vec<String>,
    pub parameter_specs: Vec<ParameterSpec>,
    /// False when this binary has no definition for a recorded migration.
    pub defined: bool,
    /// What staff see it doing ([`status::Phase::of`] its record).
    pub phase: Phase,
    /// What staff may ask of it now, in menu order: its phase's actions (Adjust only when it declares an
    /// adjustable parameter), and only stops when this binary does not define it.
    pub allowed_actions: Vec<Action>,
}

/// Connects to the first server of `urls` (one address, or several separated by commas: entry nodes of a
/// cluster) that answers; fails naming each and why when none does.
async fn connect_to_first_answering(urls: &str, database: &str) -> Result<ClickHouse> {
    let mut refusals = Vec::new();
    for url in urls.split(',').map(str::trim).filter(|url| !url.is_empty()) {
        match ClickHouse::connect(url, database).await {
            Ok(clickhouse) => return Ok(clickhouse),
            Err(Error::ClickHouseUnreachable { url, message }) => refusals.push((url, message)),
            Err(error) => return Err(error),
        }
    }
    match refusals.as_slice() {
        [] => Err(Error::ClickHouseUnreachable { url: urls.to_string(), message: "no address given".into() }),
        [(url, message)] => Err(Error::ClickHouseUnreachable { url: url.clone(), message: message.clone() }),
        _ => Err(Error::ClickHouseUnreachable {
            url: urls.to_string(),
            message: refusals.iter().map(|(url, message)| format!("{url}: {message}")).collect::<Vec<_>>().join("; "),
        }),
    }
}

/// `reason` trimmed, refused when empty: the escape hatches say why on the row and in the audit log.
fn required_reason<'a>(verb: &str, name: &str, reason: &'a str) -> Result<&'a str> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Error::InvalidRequest(format!("{verb} {name}: give the reason, for the row and the audit log")));
    }
    Ok(reason)
}

/// One migration as its detail view shows it ([`Engine::detail`]).
#[derive(Debug, Clone)]
pub struct MigrationDetail {
    /// The plan, or why the servers could not give it now (a table missing, ClickHouse down).
    pub plan: std::result::Result<plan::Plan, String>,
    pub partitions: Vec<record::PartitionProgress>,
    /// Newest first.
    pub attempts: Vec<record::Attempt>,
}

/// The engine's handle: cheap to clone, shared by the web server, the runner and the CLI.
#[derive(Clone)]
pub struct Engine {
    config: Arc<EngineConfig>,
    store: Store,
    clickhouse: ClickHouse,
    cluster: Option<Arc<Cluster>>,
    definitions: Arc<Vec<MigrationDefinition>>,
    changes: Arc<tokio::sync::OnceCell<broadcast::Sender<MigrationRecord>>>,
}

impl Engine {
    /// Connects to both databases, applies the Postgres schema and records the product's migrations: the
    /// definitions written in Rust (`definitions`, registered by the product's binary; none for a product whose
    /// migrations are all files) followed by those of the files in `config.migrations_dir`. The whole set is
    /// checked first ([`loader::assemble`]): when a file cannot be fully read or the set does not hold together,
    /// nothing is connected to or recorded.
    pub async fn connect(config: &EngineConfig, definitions: Vec<MigrationDefinition>) -> Result<Engine> {
        let definitions = loader::assemble(definitions, config.migrations_dir.as_deref())?;
        let store = Store::connect(&config.database_url).await?;
        store.migrate().await?;
        let mut clickhouse = connect_to_first_answering(&config.clickhouse_url, &config.clickhouse_database).await?;
        let mut cluster = None;
        if let Some(name) = &config.clickhouse_cluster {
            clickhouse = clickhouse.with_cluster(name);
            cluster = Some(Arc::new(Cluster::discover(&clickhouse, name, config.clickhouse_http_port_offset).await?));
        }
        store.register(&definitions.iter().map(MigrationDefinition::registration).collect::<Vec<_>>()).await?;
        Ok(Engine {
            config: Arc::new(config.clone()),
            store,
            clickhouse,
            cluster,
            definitions: Arc::new(definitions),
            changes: Arc::new(tokio::sync::OnceCell::new()),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn clickhouse(&self) -> &ClickHouse {
        &self.clickhouse
    }

    /// The cluster's nodes, when the product's ClickHouse is a cluster.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_deref()
    }

    /// The server a run or a plan sends its statements through: the one amigo connected to, or on a cluster,
    /// while that one does not answer, the first node of the cluster that does (any node sends `ON CLUSTER`
    /// DDL and reads the `Distributed` tables), so that a dead entry node stops no migration.
    pub async fn entry(&self) -> Result<ClickHouse> {
        let Some(cluster) = &self.cluster else { return Ok(self.clickhouse.clone()) };
        if let Ok(Ok(_)) = tokio::time::timeout(cluster::NODE_ANSWER_TIMEOUT, self.clickhouse.server_version()).await {
            return Ok(self.clickhouse.clone());
        }
        let node = cluster.answering_node().await.ok_or_else(|| Error::ClickHouseUnreachable {
            url: self.clickhouse.url().to_string(),
            message: "neither it nor any node of the cluster answers".into(),
        })?;
        tracing::warn!(entry = %self.clickhouse.url(), node = %node.address, "the entry server does not answer; going through another node");
        Ok(node.clickhouse.clone())
    }

    pub fn definition(&self, name: &str) -> Option<&MigrationDefinition> {
        self.definitions.iter().find(|definition| definition.name == name)
    }

    /// Checks that both databases answer now; used by `/healthz`.
    pub async fn check_health(&self) -> Result<()> {
        self.store.server_version().await?;
        self.clickhouse.server_version().await?;
        Ok(())
    }

    pub async fn postgres_version(&self) -> Result<Version> {
        let text = self.store.server_version_number().await?;
        Version::parse(&text).ok_or_else(|| Error::Corrupt(format!("Postgres reports version {text:?}")))
    }

    /// Every recorded migration, in name order.
    pub async fn list(&self) -> Result<Vec<MigrationOverview>> {
        let records = self.store.migrations().await?;
        Ok(records.into_iter().map(|record| self.overview(record)).collect())
    }

    pub async fn migration(&self, name: &str) -> Result<MigrationOverview> {
        Ok(self.overview(self.record(name).await?))
    }

    pub fn overview(&self, record: MigrationRecord) -> MigrationOverview {
        let definition = self.definition(&record.name);
        MigrationOverview {
            operation_count: definition.map_or(0, |definition| definition.operations.len()),
            current_operation: definition
                .and_then(|definition| definition.operations.get(record.current_operation_index as usize))
                .map(|operation| operation.description.clone()),
            depends_on: definition.map(|definition| definition.depends_on.clone()).unwrap_or_default(),
            parameter_specs: definition.map(|definition| definition.parameters.clone()).unwrap_or_default(),
            defined: definition.is_some(),
            phase: record.phase(self.config.lease_timeout),
            allowed_actions: record
                .observed(self.config.lease_timeout)
                .allowed_actions()
                .into_iter()
                .filter(|action| match action {
                    Action::Stop | Action::StopAndRollback => true,
                    Action::Adjust => definition.is_some_and(|definition| definition.parameters.iter().any(|spec| spec.adjustable)),
                    _ => definition.is_some(),
                })
                .collect(),
            record,
        }
    }

    async fn record(&self, name: &str) -> Result<MigrationRecord> {
        // Postgres text cannot hold NUL, so no migration has it in its name; asking would fail as a database error.
        if name.contains('\0') {
            return Err(Error::UnknownMigration(name.into()));
        }
        self.store.migration(name).await?.ok_or_else(|| Error::UnknownMigration(name.into()))
    }

    /// The record of `name`, refused unless its situation allows `action` ([`status::Action::check`]).
    async fn record_allowing(&self, name: &str, action: Action) -> Result<MigrationRecord> {
        let record = self.record(name).await?;
        action.check(name, record.observed(self.config.lease_timeout))?;
        Ok(record)
    }

    /// The names of every migration this binary defines.
    pub fn definition_names(&self) -> Vec<String> {
        self.definitions.iter().map(|definition| definition.name.clone()).collect()
    }

    fn require_definition(&self, name: &str) -> Result<&MigrationDefinition> {
        self.definition(name).ok_or_else(|| Error::UnknownMigration(name.into()))
    }

    /// Validates `values` (a JSON object of parameter values) for migration `name`, defaults filled in.
    pub fn parameters_from_json(&self, name: &str, values: &serde_json::Map<String, serde_json::Value>) -> Result<Parameters> {
        let definition = self.require_definition(name)?;
        Ok(Parameters::from_json(name, &definition.parameters, values)?)
    }

    /// Validates `KEY=VALUE` assignments for migration `name`, defaults filled in.
    pub fn parameters_from_assignments(&self, name: &str, assignments: &[String]) -> Result<Parameters> {
        let definition = self.require_definition(name)?;
        Ok(Parameters::from_assignments(name, &definition.parameters, assignments)?)
    }

    /// What a run of `name` with `parameters` would send, operation by operation ([`plan::Plan`]); changes nothing.
    pub async fn plan(&self, name: &str, parameters: Parameters) -> Result<plan::Plan> {
        let definition = self.require_definition(name)?;
        let context = MigrationContext::for_checks(name, self.entry().await?, self.cluster.clone(), self.store.pool().clone(), parameters);
        plan::Plan::of(definition, &context, self.store.copy_throughput().await?).await
    }

    /// What the page's detail view shows of `name` beside its row: the plan of a run with the parameters of its
    /// latest run (the defaults before one), the partitions its operations work through, and its attempts.
    pub async fn detail(&self, name: &str) -> Result<MigrationDetail> {
        let definition = self.require_definition(name)?;
        let record = self.record(name).await?;
        let values = record.parameters.as_object().cloned().unwrap_or_default();
        let parameters = Parameters::from_json(name, &definition.parameters, &values)
            .or_else(|_| Parameters::from_json(name, &definition.parameters, &serde_json::Map::new()))?;
        Ok(MigrationDetail {
            plan: self.plan(name, parameters).await.map_err(|error| error.to_string()),
            partitions: self.store.partitions(name).await?,
            attempts: self.store.attempts(name).await?,
        })
    }

    /// Queues a fresh run of `name` with the given parameter values, after checking its status, the
    /// instance version, its dependencies and the parameters. Refused requests change nothing.
    pub async fn start(&self, name: &str, actor: &str, values: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
        self.start_run(name, actor, values, None).await
    }

    /// [`Engine::start`] with its precheck and health checks skipped for this run (an escape hatch: a check that
    /// fails for a reason staff know is harmless), `reason` shown on the row and kept in the audit log.
    pub async fn start_skipping_checks(
        &self,
        name: &str,
        actor: &str,
        values: &serde_json::Map<String, serde_json::Value>,
        reason: &str,
    ) -> Result<()> {
        let reason = required_reason("start skipping the checks of", name, reason)?;
        self.start_run(name, actor, values, Some(reason)).await
    }

    async fn start_run(
        &self,
        name: &str,
        actor: &str,
        values: &serde_json::Map<String, serde_json::Value>,
        checks_skipped: Option<&str>,
    ) -> Result<()> {
        let definition = self.require_definition(name)?;
        let record = self.record_allowing(name, Action::Start).await?;
        if !definition.versions.contains(&self.config.instance_version) {
            return Err(Error::VersionOutOfRange {
                migration: name.into(),
                instance: self.config.instance_version.to_string(),
                range: definition.versions.to_string(),
            });
        }
        for dependency in &definition.depends_on {
            let status = self.store.migration(dependency).await?.map(|record| record.status);
            if status != Some(Status::Completed) {
                return Err(Error::DependencyNotCompleted {
                    migration: name.into(),
                    dependency: dependency.clone(),
                    status: status.map_or_else(|| "not defined".into(), |status| status.to_string()),
                });
            }
        }
        let parameters = Parameters::from_json(name, &definition.parameters, values)?.to_json();
        let mut details = parameters.clone();
        if let (Some(reason), Some(details)) = (checks_skipped, details.as_object_mut()) {
            details.insert("skip_checks".into(), serde_json::Value::String(reason.into()));
        }
        let run = RunRequest { parameters: Some(&parameters), checks_skipped, action: "start", details };
        self.store.request_run(name, record.status, actor, run).await
    }

    /// Queues a resume of an errored migration from its current operation and checkpoint.
    pub async fn resume(&self, name: &str, actor: &str) -> Result<()> {
        self.require_definition(name)?;
        let record = self.record_allowing(name, Action::Resume).await?;
        let details = serde_json::json!({ "operation_index": record.current_operation_index });
        self.store
            .request_run(name, Status::Errored, actor, RunRequest { parameters: None, checks_skipped: None, action: "resume", details })
            .await
    }

    /// Queues a rollback of an errored migration, or of a completed one from the backup it kept.
    pub async fn rollback(&self, name: &str, actor: &str) -> Result<()> {
        self.require_definition(name)?;
        self.record_allowing(name, Action::Rollback).await?;
        self.store.request_rollback(name, actor).await
    }

    /// Stops a starting or running migration: kills its current ClickHouse query at once (the runner, in
    /// whatever process, then records the stop and rolls back if asked to).
    pub async fn stop(&self, name: &str, actor: &str, rollback: bool) -> Result<()> {
        let record = self.record(name).await?;
        let request = if rollback { Action::StopAndRollback } else { Action::Stop };
        if record.phase(self.config.lease_timeout) == Phase::Stopping {
            return Err(Error::AlreadyStopping { migration: name.into(), by: record.stop_requested_by.unwrap_or_default() });
        }
        request.check(name, record.observed(self.config.lease_timeout))?;
        self.store.request_stop(name, actor, rollback).await?;
        if self.store.stop_unclaimed(name, &format!("stopped by {actor} before it started")).await? {
            return Ok(());
        }
        self.kill_statements(name).await
    }

    /// Pauses a running migration: its runner finishes the unit of work in progress (a partition, a batch),
    /// then holds the run there, killing nothing and keeping the lease, until [`Engine::continue_run`].
    /// Returns the migration as it is now.
    pub async fn pause(&self, name: &str, actor: &str) -> Result<MigrationOverview> {
        self.pause_or_continue(name, actor, Action::Pause).await
    }

    /// Lets a paused (or pausing) migration go on from where its runner holds it.
    pub async fn continue_run(&self, name: &str, actor: &str) -> Result<MigrationOverview> {
        self.pause_or_continue(name, actor, Action::Continue).await
    }

    /// Changes adjustable parameters of a queued, starting or running migration (`values`: name to value, typed
    /// or as text); its operations take them at their next unit of work. Refused, changing nothing, when a name
    /// is unknown or not adjustable or a value invalid. Returns the migration as it is now.
    pub async fn adjust(&self, name: &str, actor: &str, values: &serde_json::Map<String, serde_json::Value>) -> Result<MigrationOverview> {
        let definition = self.require_definition(name)?;
        self.record_allowing(name, Action::Adjust).await?;
        let changes = Parameters::adjustments(name, &definition.parameters, values)?;
        if changes.is_empty() {
            return Err(Error::InvalidRequest(format!("adjust {name}: give at least one parameter to change")));
        }
        Ok(self.overview(self.store.request_adjust(name, actor, &changes).await?))
    }

    /// Drops the backup a completed migration kept (a rewrite's original table, on every node of a cluster),
    /// after which it can no longer be rolled back. Returns the migration as it is now.
    pub async fn finalize(&self, name: &str, actor: &str) -> Result<MigrationOverview> {
        let record = self.record_allowing(name, Action::Finalize).await?;
        let table = record.backup_table.clone().unwrap_or_default();
        let entry = self.entry().await?;
        let drop = entry.drop_table_sql(&entry.qualified(&table));
        entry.execute(&drop, &format!("amigo-{name}-finalize-{}", uuid::Uuid::new_v4().simple()), &Default::default()).await?;
        Ok(self.overview(self.store.finalize(name, actor, &table).await?))
    }

    /// Lets a run that holds its cut-over (ready to cut over) swap its tables now. Returns the migration.
    pub async fn cut_over(&self, name: &str, actor: &str) -> Result<MigrationOverview> {
        self.record_allowing(name, Action::CutOver).await?;
        Ok(self.overview(self.store.request_cutover(name, actor).await?))
    }

    /// An escape hatch for a migration whose runner stopped heartbeating and that no live runner has reaped:
    /// marks it errored (resumable, or to roll back), with `reason` on its row, in its error log and in the
    /// audit log. Returns the migration as it is now.
    pub async fn mark_errored(&self, name: &str, actor: &str, reason: &str) -> Result<MigrationOverview> {
        self.record_allowing(name, Action::MarkErrored).await?;
        let record =
            self.store.mark_errored(name, actor, required_reason(Action::MarkErrored.verb(), name, reason)?, self.config.lease_timeout);
        Ok(self.overview(record.await?))
    }

    /// An escape hatch for an errored migration whose work staff finished by hand: marks it completed, with
    /// `reason` on its row and in the audit log. Returns the migration as it is now.
    pub async fn mark_completed(&self, name: &str, actor: &str, reason: &str) -> Result<MigrationOverview> {
        self.record_allowing(name, Action::MarkCompleted).await?;
        let record = self.store.mark_completed(name, actor, required_reason(Action::MarkCompleted.verb(), name, reason)?);
        Ok(self.overview(record.await?))
    }

    async fn pause_or_continue(&self, name: &str, actor: &str, action: Action) -> Result<MigrationOverview> {
        self.record_allowing(name, action).await?;
        Ok(self.overview(self.store.request_pause(name, actor, action == Action::Pause).await?))
    }

    /// Kills every statement of migration `name` this instance runs, its rollback's included: every stream's, on
    /// the server amigo connects to and, on a cluster, on every node that is up (all at once). Tries them all;
    /// returns the first failure.
    pub(crate) async fn kill_statements(&self, name: &str) -> Result<()> {
        self.kill_statements_of(name, true).await
    }

    /// [`Engine::kill_statements`], of its rollbacks' statements too with `rollbacks`.
    pub(crate) async fn kill_statements_of(&self, name: &str, rollbacks: bool) -> Result<()> {
        let (prefix, tag) = context::statements_of(name, self.clickhouse.database(), rollbacks);
        let nodes = self.cluster.as_ref().map_or(&[][..], |cluster| cluster.nodes());
        let on_nodes = futures::future::join_all(nodes.iter().map(|node| async {
            match node.clickhouse.kill_queries_named(&prefix, &tag).await {
                // A node that refuses connections is down: nothing of the migration runs there.
                Err(error) if error.is_connection_refused() => Ok(()),
                outcome => outcome,
            }
        }));
        let on_entry = async {
            match self.clickhouse.kill_queries_named(&prefix, &tag).await {
                // On a cluster, statements go through another node while the entry server is down.
                Err(error) if self.cluster.is_some() && error.is_connection_refused() => Ok(()),
                outcome => outcome,
            }
        };
        let (entry, on_nodes) = futures::future::join(on_entry, on_nodes).await;
        on_nodes.into_iter().fold(entry, Result::and)
    }

    /// Every figure `/metrics` reports, read now, with each migration's phase.
    pub async fn metrics(&self) -> Result<metrics::MetricsSnapshot> {
        let mut snapshot = metrics::MetricsSnapshot::read(&self.store).await?;
        let records = self.store.migrations().await?;
        for migration in &mut snapshot.migrations {
            if let Some(record) = records.iter().find(|record| record.name == migration.name) {
                migration.phase = record.phase(self.config.lease_timeout);
            }
        }
        Ok(snapshot)
    }

    pub async fn errors(&self, name: &str) -> Result<Vec<MigrationError>> {
        self.record(name).await?;
        self.store.errors(name).await
    }

    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        self.store.audit_log(limit).await
    }

    pub async fn settings(&self) -> Result<RuntimeSettings> {
        Ok(RuntimeSettings::from_stored(&self.store.settings().await?))
    }

    /// Validates and saves one runtime setting; runners read settings fresh, so it takes effect at once.
    pub async fn update_setting(&self, key: &str, value: &serde_json::Value, actor: &str) -> Result<RuntimeSettings> {
        let mut settings = self.settings().await?;
        settings.apply(key, value)?;
        // Saved as applied (an address trimmed), so that what Postgres's notification trigger reads is what is in force.
        let applied = settings.value(key).unwrap_or_else(|| value.clone());
        self.store.save_setting(key, &applied, actor).await?;
        Ok(settings)
    }

    /// Which migrations must complete before this instance may run `target` (default: its own version).
    pub async fn check_upgrade(&self, target: Option<&Version>) -> Result<UpgradeCheck> {
        let target = target.cloned().unwrap_or_else(|| self.config.instance_version.clone());
        Ok(UpgradeCheck::evaluate(target, &self.store.migrations().await?))
    }
}
