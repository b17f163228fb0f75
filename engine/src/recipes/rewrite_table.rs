//! The *rewrite a table* recipe: gives a MergeTree-family table of any product a new sort key, primary key,
//! sample key, engine or table settings, which ClickHouse cannot change in place, by building a new table and
//! copying the original into it partition by partition while the product keeps inserting:
//!
//! 0. create the new table `AS` the original, with only the clauses the rewrite changes replaced (columns,
//!    codecs, defaults, skip indexes, projections, constraints, TTL, partition key and other settings kept);
//! 1. copy the original's partitions, several at once, a large one in slices ([`partition_copy`]), saving a
//!    checkpoint after each, and pausing before each while ClickHouse is under pressure;
//! 2. catch up: copy again the partitions whose row counts changed meanwhile, a bounded number of passes;
//! 3. swap the names atomically (`EXCHANGE TABLES` in an Atomic database, one two-table `RENAME` in an
//!    Ordinary one), keeping the original as the backup; wait until no insert begun before the swap is still
//!    running; copy into the new table the rows the original received since the last catch-up, those whose
//!    row identity it lacks;
//! 4. verify every partition of the original is whole in the new table.
//!
//! Materialized views writing into the table (`TO table`) follow its name, not the table (measured on 18.16 and
//! 26.9): after the swap they write into the new table, and what one wrote into the original while its insert
//! was in flight is copied over like any insert. Rollback swaps back the same way and
//! drops the new table. On a cluster, name the `Distributed` table: the table it reads on every shard is
//! rewritten, on every shard at once, each with its own checkpoint. See docs/recipes/rewrite_table.md.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::capabilities::Capabilities;
use crate::clickhouse::{ClickHouse, QueryOptions};
use crate::context::MigrationContext;
use crate::definition::{nothing_to_undo, CheckOutcome, MigrationDefinition, Operation};
use crate::parameters::{quote_string, ParameterSpec, ParameterValue};
use crate::pressure::busiest_partition;
use crate::preview::{clickhouse_footprint, least_free_disk_space, partition_sizes, DurationKind, OperationPreview};
use crate::recipes::partition_copy::{self, CopiedColumns, PartitionCopy};
use crate::tables::{
    identities_missing, partition_checksums, partition_filter, partition_row_counts, split_top_level, strip_enclosing_parentheses,
    table_exists, top_level_positions,
};
use crate::{Error, Result};

/// The parameter that bounds the catch-up passes before the swap.
pub const CATCH_UP_PASSES: &str = "catch_up_passes";
/// The parameter that turns on the checksum comparison after the swap (declared when a row checksum is given).
pub const VERIFY_CHECKSUMS: &str = "verify_checksums";
/// The parameter that holds the swap for staff's Cut over, the run copying new inserts meanwhile.
pub const HOLD_CUTOVER: &str = "hold_cutover";
/// Catch-up passes where the migration does not declare [`CATCH_UP_PASSES`].
const DEFAULT_CATCH_UP_PASSES: i64 = 3;
/// Active parts in one partition above which the health check stops the copy (inserts start to fail at 300).
const MAX_PARTS_PER_PARTITION: u64 = 250;
/// How long a node of a cluster may take to answer the health check.
const NODE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// The clauses of a table's storage definition, as `system.tables.engine_full` prints them after the engine.
const STORAGE_CLAUSES: &[&str] = &[" PARTITION BY ", " PRIMARY KEY ", " ORDER BY ", " SAMPLE BY ", " TTL ", " SETTINGS "];

/// A table rewritten with new keys, engine or settings: plain data (it can be read from a migration file), turned
/// into a migration's parameters, checks and operations by [`RewriteTable::define`].
///
/// Clauses left `None` are kept as the original has them. Write the changed ones as ClickHouse prints them in
/// `system.tables` (`sorting_key`, `primary_key`, `sampling_key`; spaces, backticks and enclosing parentheses
/// aside): the recipe tells the rebuilt table from the original by them, and the first operation checks that
/// the table it created reads back that way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteTable {
    /// The table rewritten, in the product's database: a MergeTree-family table, or a `Distributed` table over
    /// one in the same database, whose table on every shard is then rewritten.
    pub table: String,
    /// What the copy is called until the swap (a rollback drops it).
    pub new_table: String,
    /// What the original is called after the swap; nothing drops it but staff.
    pub backup_table: String,
    /// The new sort key (`ORDER BY`), e.g. `team_id, toDate(timestamp), uuid`. Changing it without a
    /// `primary_key` makes the sort key the primary key.
    pub order_by: Option<String>,
    /// The new primary key (`PRIMARY KEY`), a prefix of the sort key.
    pub primary_key: Option<String>,
    /// The new sample key (`SAMPLE BY`), an expression of the primary key.
    pub sample_by: Option<String>,
    /// The new engine and its parameters, e.g. `ReplacingMergeTree(version)`, written without `Replicated`: a
    /// replicated original gets the replicated form, with its replica name and a ZooKeeper path of its own.
    pub engine: Option<String>,
    /// Table settings set or changed (e.g. `index_granularity` = `4096`), values as SQL literals; the original's
    /// other settings are kept.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// The expression that identifies a row (e.g. `uuid`, or `(team_id, id)` for several columns), used to copy
    /// only the rows a table lacks after the swap and to check that none is missing. Two rows the product inserted apart must
    /// differ in it: for a `ReplacingMergeTree`, include the version column.
    pub row_identity: String,
    /// An expression hashing a row's content to a `UInt64` (e.g. `cityHash64(id, name)`). Given, the migration
    /// has the `verify_checksums` parameter: the sums of it per partition are compared after the swap.
    pub row_checksum: Option<String>,
}

/// What `system.tables` says of a table's storage.
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
struct TableShape {
    /// The engine's name, e.g. `ReplicatedReplacingMergeTree`.
    engine: String,
    /// The engine with its parameters and every storage clause.
    engine_full: String,
    partition_key: String,
    sorting_key: String,
    primary_key: String,
    sampling_key: String,
}

/// What a shard's tables held just before the swap: rows per partition of the original, and the partitions that
/// differed from the copy's.
type BeforeSwap = (BTreeMap<String, u64>, BTreeSet<String>);

impl RewriteTable {
    /// Adds the rewrite to `migration`: its parameters ([`RewriteTable::parameters`]), the checks (required
    /// while the table lacks the change, the precheck, the health check, the throttle) and the operations.
    pub fn define(self, migration: MigrationDefinition) -> MigrationDefinition {
        let recipe = Arc::new(self.clone());
        let migration = self
            .parameters()
            .into_iter()
            .fold(migration, MigrationDefinition::parameter)
            .is_required(bound(&recipe, |recipe, context| async move { recipe.is_required(&context).await }))
            .precheck(bound(&recipe, |recipe, context| async move { recipe.precheck(&context).await }))
            .health_check(bound(&recipe, |recipe, context| async move { recipe.health_check(&context).await }))
            .throttle(bound(&recipe, |recipe, context| async move { recipe.throttle(&context).await }));
        self.operations().into_iter().fold(migration, MigrationDefinition::operation)
    }

    /// The parameters the operations read: the copy's ([`partition_copy::parameters`]: `parallelism`,
    /// `slice_rows`, `max_threads`), `catch_up_passes`, `hold_cutover` and, with a `row_checksum`,
    /// `verify_checksums`. A migration that does not declare them gets their defaults.
    pub fn parameters(&self) -> Vec<ParameterSpec> {
        let mut parameters = partition_copy::parameters();
        parameters.extend([
            ParameterSpec::integer(
                CATCH_UP_PASSES,
                "How many times partitions that received inserts during the copy are copied again before the swap",
                DEFAULT_CATCH_UP_PASSES,
                1,
                20,
            ),
            ParameterSpec::boolean(
                HOLD_CUTOVER,
                "After the copy and catch-up, wait ready to cut over (still copying new inserts) until someone clicks Cut over, then swap the tables",
                false,
            ),
        ]);
        if self.row_checksum.is_some() {
            parameters.push(ParameterSpec::boolean(
                VERIFY_CHECKSUMS,
                &format!(
                    "After the swap, also compare a checksum of every row of every partition (reads both tables in full: about a tenth of the migration's time); row counts and, where the new table has more rows, {} are always checked",
                    self.identity_plural()
                ),
                false,
            ));
        }
        parameters
    }

    /// The five operations, each with its rollback: create the new table (dropped on rollback), copy, catch up,
    /// swap (swapped back on rollback), verify.
    pub fn operations(self) -> Vec<Operation> {
        let recipe = Arc::new(self);
        vec![
            Operation::rust(
                &format!("create {} with the new {}", recipe.new_table, recipe.changes()),
                bound(&recipe, |recipe, context| async move { recipe.create_new_table(&context).await }),
                bound(&recipe, |recipe, context| async move { recipe.drop_new_table(&context).await }),
            )
            .with_preview(bound(&recipe, |recipe, context| async move { recipe.preview_create(&context).await })),
            Operation::rust(
                &format!("copy {} into it, partition by partition", recipe.table),
                bound(&recipe, |recipe, context| async move { recipe.copy_partitions(&context).await }),
                nothing_to_undo,
            )
            .with_preview(bound(&recipe, |recipe, context| async move { recipe.preview_copy(&context).await })),
            Operation::rust(
                "copy again the partitions that received inserts meanwhile",
                bound(&recipe, |recipe, context| async move { recipe.catch_up(&context).await }),
                nothing_to_undo,
            )
            .with_preview(bound(&recipe, |recipe, context| async move { recipe.preview_catch_up(&context).await })),
            Operation::rust(
                &format!("swap the tables, keeping the original as {}", recipe.backup_table),
                bound(&recipe, |recipe, context| async move { recipe.swap(&context).await }),
                bound(&recipe, |recipe, context| async move { recipe.swap_back(&context).await }),
            )
            .with_preview(bound(&recipe, |recipe, context| async move { recipe.preview_swap(&context).await })),
            Operation::rust(
                "verify every partition of the original is whole in the new table",
                bound(&recipe, |recipe, context| async move { recipe.verify(&context).await }),
                nothing_to_undo,
            )
            .with_preview(bound(&recipe, |recipe, context| async move { recipe.preview_verify(&context).await })),
        ]
    }

    /// Plan of operation 0: the `CREATE TABLE` as it would be sent, and the drop of its rollback.
    async fn preview_create(&self, context: &MigrationContext) -> Result<OperationPreview> {
        let clickhouse = &context.clickhouse;
        let table = self.storage_table(clickhouse).await?;
        let shape = table_shape(clickhouse, &table).await?.ok_or_else(|| Error::Migration(format!("{table} does not exist")))?;
        Ok(OperationPreview {
            statements: vec![self.create_sql(clickhouse, &table, &shape)],
            rollback: vec![clickhouse.drop_table_sql(&clickhouse.qualified(&self.new_table))],
            duration: DurationKind::Brief,
            ..OperationPreview::default()
        })
    }

    /// Plan of operation 1: each partition's drop and copy, and the table's partitions, rows and bytes (of this
    /// server's shard on a cluster).
    async fn preview_copy(&self, context: &MigrationContext) -> Result<OperationPreview> {
        let clickhouse = &context.clickhouse;
        let table = self.storage_table(clickhouse).await?;
        let copy = self.partition_copy(clickhouse).await?;
        let partitions = partition_sizes(clickhouse, &table).await?;
        let statements = copy.preview(context, &partitions).await?;
        let footprint = clickhouse_footprint(&table, &partitions);
        let mut note =
            "copies `parallelism` partitions (or slices) at once, a partition of more than `slice_rows` rows in slices through staging tables; pauses before each while ClickHouse is under pressure; the max_threads parameter is sent as each copy's max_threads"
                .to_string();
        if context.cluster.is_some() {
            note.push_str("; on a cluster every shard copies its own partitions at once (the figures are this node's shard)");
        }
        Ok(OperationPreview {
            statements,
            note,
            disk_needed: footprint.bytes,
            copied_bytes: footprint.bytes,
            tables: vec![footprint],
            duration: DurationKind::Copy,
            ..OperationPreview::default()
        })
    }

    /// Plan of operation 2: what it copies again depends on the inserts during the copy; its time is estimated
    /// as the newest partition's copy, the one a product's inserts usually land in.
    async fn preview_catch_up(&self, context: &MigrationContext) -> Result<OperationPreview> {
        let table = self.storage_table(&context.clickhouse).await?;
        let newest = partition_sizes(&context.clickhouse, &table).await?.pop();
        let passes = integer_parameter(context, CATCH_UP_PASSES, DEFAULT_CATCH_UP_PASSES).max(1);
        Ok(OperationPreview {
            note: format!(
                "copies again, as the copy does, each partition whose row count changed during the copy, at most {passes} passes; the estimate counts the newest partition once"
            ),
            copied_bytes: newest.map_or(0, |partition| partition.bytes_on_disk),
            duration: DurationKind::Copy,
            ..OperationPreview::default()
        })
    }

    /// Plan of operation 3: the renames, and the renames back of its rollback.
    async fn preview_swap(&self, context: &MigrationContext) -> Result<OperationPreview> {
        let clickhouse = &context.clickhouse;
        let table = self.storage_table(clickhouse).await?;
        Ok(OperationPreview {
            statements: rotation_sql(clickhouse, &table, &self.backup_table, &self.new_table),
            rollback: rotation_sql(clickhouse, &table, &self.new_table, &self.backup_table),
            note: format!(
                "then waits for the inserts begun before the swap and copies into the new table the rows {} received since the catch-up that it lacks (by {})",
                self.backup_table, self.row_identity
            ),
            duration: DurationKind::Brief,
            ..OperationPreview::default()
        })
    }

    /// Plan of operation 4: reads only, a checksum of every row with `verify_checksums`.
    async fn preview_verify(&self, context: &MigrationContext) -> Result<OperationPreview> {
        let checksums = self.row_checksum.is_some() && boolean_parameter(context, VERIFY_CHECKSUMS);
        Ok(OperationPreview {
            note: if checksums {
                "compares row counts per partition, row identities where they differ, and a checksum of every row (reads both tables in full)".into()
            } else {
                "compares row counts per partition from system.parts, and row identities where they differ".into()
            },
            duration: if checksums { DurationKind::Unknown } else { DurationKind::Brief },
            ..OperationPreview::default()
        })
    }

    /// True when `table` (on the server `clickhouse` speaks to) has every clause the rewrite changes: it is the
    /// rebuilt table.
    pub async fn is_rebuilt(&self, clickhouse: &ClickHouse, table: &str) -> Result<bool> {
        Ok(table_shape(clickhouse, table).await?.is_some_and(|shape| self.has_changes(&shape)))
    }

    /// Needed while the table exists without the change.
    pub async fn is_required(&self, context: &MigrationContext) -> Result<bool> {
        let table = self.storage_table(&context.clickhouse).await?;
        Ok(table_exists(&context.clickhouse, &table).await? && !self.is_rebuilt(&context.clickhouse, &table).await?)
    }

    /// Refuses to start when the table is missing, is not a MergeTree-family table in the syntax the recipe
    /// reads, already has the change, or when the disk cannot hold a second copy of it with a margin (on servers
    /// with `system.disks`, 19.15 and later).
    pub async fn precheck(&self, context: &MigrationContext) -> Result<CheckOutcome> {
        let clickhouse = &context.clickhouse;
        let table = self.storage_table(clickhouse).await?;
        let Some(shape) = table_shape(clickhouse, &table).await? else {
            return Ok(CheckOutcome::Fail(format!("{}.{table} does not exist", clickhouse.database())));
        };
        if !shape.engine.ends_with("MergeTree") {
            return Ok(CheckOutcome::Fail(format!(
                "{table} has engine {}, and only MergeTree-family tables can be rewritten",
                shape.engine
            )));
        }
        if find_top_level(&shape.engine_full, " ORDER BY ").is_none() {
            return Ok(CheckOutcome::Fail(format!(
                "{table} is declared in the old MergeTree syntax ({}); only tables declared with ORDER BY can be rewritten",
                shape.engine_full
            )));
        }
        if self.has_changes(&shape) {
            return Ok(CheckOutcome::Fail(format!("{table} already has the {}: there is nothing to rewrite", self.changes())));
        }
        let Some(free) = least_free_disk_space(clickhouse).await? else {
            return Ok(CheckOutcome::Pass);
        };
        let needed: u64 = clickhouse
            .client()
            .query("SELECT toUInt64(sum(bytes_on_disk) * 1.2) FROM system.parts WHERE database = ? AND table = ? AND active")
            .bind(clickhouse.database())
            .bind(&table)
            .fetch_one()
            .await?;
        Ok(if free >= needed {
            CheckOutcome::Pass
        } else {
            CheckOutcome::Fail(format!("{free} bytes free on disk, and the copy needs {needed}; free some space first"))
        })
    }

    /// Fails when a partition of the original or the copy has so many active parts that inserts would soon be
    /// refused: on the server, or on any node of a cluster that answers (a node that does not fails its shard's
    /// statements, which is the shard watch's business).
    pub async fn health_check(&self, context: &MigrationContext) -> Result<CheckOutcome> {
        let table = self.storage_table(&context.clickhouse).await?;
        let tables = [table.as_str(), self.new_table.as_str()];
        let Some(cluster) = &context.cluster else {
            return too_many_parts(&context.clickhouse, &tables).await;
        };
        for node in cluster.nodes() {
            match tokio::time::timeout(NODE_CHECK_TIMEOUT, too_many_parts(&node.clickhouse, &tables)).await {
                Ok(Ok(CheckOutcome::Pass)) => {}
                Ok(Ok(CheckOutcome::Fail(reason))) => return Ok(CheckOutcome::Fail(format!("node {}: {reason}", node.address))),
                Ok(Err(error)) => tracing::warn!(node = %node.address, %error, "the health check cannot read this node's parts"),
                Err(_) => {
                    tracing::warn!(node = %node.address, "the health check got no answer from this node within {NODE_CHECK_TIMEOUT:?}")
                }
            }
        }
        Ok(CheckOutcome::Pass)
    }

    /// Pauses the copy between partitions while the original or the copy is under pressure (see `pressure.rs`).
    pub async fn throttle(&self, context: &MigrationContext) -> Result<CheckOutcome> {
        let table = self.storage_table(&context.clickhouse).await?;
        context.clickhouse_pressure(&[&table, &self.new_table]).await
    }

    /// Operation 0 (on every node of a cluster): the new table, made `AS` the original so that it has the same
    /// columns (with their defaults, codecs, comments and TTLs), skip indexes, projections and constraints, with
    /// the storage clauses rebuilt from the original's and the changed ones replaced. Fails when the table does
    /// not read back as rebuilt, before anything is copied.
    async fn create_new_table(&self, context: &MigrationContext) -> Result<()> {
        let clickhouse = &context.clickhouse;
        let table = self.storage_table(clickhouse).await?;
        let shape = table_shape(clickhouse, &table).await?.ok_or_else(|| Error::Migration(format!("{table} does not exist")))?;
        context.clickhouse_execute(&self.create_sql(clickhouse, &table, &shape), &QueryOptions::default()).await?;
        let created = table_shape(clickhouse, &self.new_table)
            .await?
            .ok_or_else(|| Error::Migration(format!("{} is missing right after it was created", self.new_table)))?;
        if !self.has_changes(&created) {
            return Err(Error::Migration(format!(
                "{} reads back with sort key `{}`, primary key `{}`, sample key `{}` and engine `{}`, which is not how the migration writes the {}: write them as ClickHouse prints them, so that the rebuilt table can be told from the original",
                self.new_table,
                created.sorting_key,
                created.primary_key,
                created.sampling_key,
                created.engine_full,
                self.changes()
            )));
        }
        Ok(())
    }

    /// The statement of operation 0.
    fn create_sql(&self, clickhouse: &ClickHouse, table: &str, shape: &TableShape) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {}{} AS {} ENGINE = {}",
            clickhouse.qualified(&self.new_table),
            clickhouse.on_cluster(),
            clickhouse.qualified(table),
            self.new_storage(shape, clickhouse.capabilities(), clickhouse.database())
        )
    }

    /// Rollback of operation 0: the new table dropped (on every node), at once in an Atomic database, then the
    /// staging tables a copy that stopped left. The drop first: a rollback's statement waits while ClickHouse
    /// refuses connections, and the staging tables are listed only once it has answered.
    async fn drop_new_table(&self, context: &MigrationContext) -> Result<()> {
        let sql = context.clickhouse.drop_table_sql(&context.clickhouse.qualified(&self.new_table));
        context.clickhouse_execute(&sql, &QueryOptions::default()).await?;
        context.on_every_shard(|context| async move { partition_copy::drop_staging_tables(&context, &self.new_table).await }).await
    }

    /// Operation 1: on every shard, every partition of the original, in order, skipping those the checkpoint
    /// lists as copied (`{"copied": ["<partition id>", …]}`).
    async fn copy_partitions(&self, context: &MigrationContext) -> Result<()> {
        context.on_every_shard(|context| async move { self.copy_partitions_of_shard(&context).await }).await
    }

    async fn copy_partitions_of_shard(&self, context: &MigrationContext) -> Result<()> {
        let copy = self.partition_copy(&context.clickhouse).await?;
        let sizes = partition_sizes(&context.clickhouse, &copy.source).await?;
        copy.copy_all(context, &sizes).await
    }

    /// The copy of the table (this node's, on a cluster) into the new table, whose staging tables have the new
    /// table's storage without replication.
    async fn partition_copy(&self, clickhouse: &ClickHouse) -> Result<PartitionCopy> {
        let source = self.storage_table(clickhouse).await?;
        let shape = table_shape(clickhouse, &source).await?.ok_or_else(|| Error::Migration(format!("{source} does not exist")))?;
        let storage = self.new_storage(&shape, clickhouse.capabilities(), clickhouse.database());
        let (family, arguments) = unreplicated_engine(&storage);
        let engine = if arguments.is_empty() { family.to_string() } else { format!("{family}({})", arguments.join(", ")) };
        let staging_storage = format!("{engine} {}", storage[engine_text(&storage).len()..].trim());
        let columns = CopiedColumns::of(clickhouse, &source).await?;
        Ok(PartitionCopy { source, target: self.new_table.clone(), staging_storage, columns })
    }

    /// Partitions whose row counts differ between `table` and the new table.
    async fn differing_partitions(&self, context: &MigrationContext, table: &str) -> Result<Vec<String>> {
        let source = row_counts(context, table).await?;
        let copy = row_counts(context, &self.new_table).await?;
        Ok(source.into_iter().filter(|(partition_id, rows)| copy.get(partition_id) != Some(rows)).map(|(id, _)| id).collect())
    }

    /// Operation 2: on every shard, copies again what changed during the copy, until nothing did or the passes
    /// run out (the swap reconciles what is left).
    /// Operation 2: the catch-up passes on every shard; then, with `hold_cutover`, the run waits ready to cut over,
    /// every shard copying what arrives, until staff let it cut over.
    async fn catch_up(&self, context: &MigrationContext) -> Result<()> {
        context.on_every_shard(|context| async move { self.catch_up_shard(&context).await }).await?;
        if !boolean_parameter(context, HOLD_CUTOVER) {
            return Ok(());
        }
        context.await_cutover(|| context.on_every_shard(|context| async move { self.catch_up_pass(&context).await.map(drop) })).await
    }

    async fn catch_up_shard(&self, context: &MigrationContext) -> Result<()> {
        let passes = integer_parameter(context, CATCH_UP_PASSES, DEFAULT_CATCH_UP_PASSES).max(1);
        for pass in 0..passes {
            if !self.catch_up_pass(context).await? {
                break;
            }
            context.report_progress((pass + 1) as f64 / passes as f64).await?;
        }
        Ok(())
    }

    /// Copies again every partition that differs between the table and its copy; whether there was any.
    async fn catch_up_pass(&self, context: &MigrationContext) -> Result<bool> {
        let table = self.storage_table(&context.clickhouse).await?;
        let changed: BTreeSet<String> = self.differing_partitions(context, &table).await?.into_iter().collect();
        if changed.is_empty() {
            return Ok(false);
        }
        tracing::info!(migration = %context.migration, partitions = ?changed, "copying again partitions that received inserts");
        let copy = self.partition_copy(&context.clickhouse).await?;
        let sizes = partition_sizes(&context.clickhouse, &table).await?;
        copy.copy_again(context, &sizes.into_iter().filter(|size| changed.contains(&size.partition_id)).collect::<Vec<_>>()).await?;
        Ok(true)
    }

    /// Copies into `into` the rows of `from` whose row identity `into` lacks, in the given partitions.
    async fn copy_missing_rows(&self, context: &MigrationContext, from: &str, into: &str, partitions: &BTreeSet<String>) -> Result<()> {
        let columns = CopiedColumns::of(&context.clickhouse, from).await?;
        let identity = strip_enclosing_parentheses(&self.row_identity);
        for partition_id in partitions {
            let filter = partition_filter(&context.clickhouse, from, partition_id).await?;
            let (from, into) = (context.clickhouse.qualified(from), context.clickhouse.qualified(into));
            let sql = format!(
                "INSERT INTO {into} ({list}) SELECT {list} FROM {from} WHERE {filter}
                 AND ({identity}) NOT IN (SELECT {identity} FROM {into} WHERE {filter})",
                list = columns.list
            );
            context.clickhouse_execute_part(&sql, &columns.options(context), 0.0..0.0).await?;
        }
        Ok(())
    }

    /// Copies into `into` the rows of `from` that it lacks, in every partition of `from`, on every shard.
    async fn copy_all_missing_rows(&self, context: &MigrationContext, from: &str, into: &str) -> Result<()> {
        context
            .on_every_shard(|context| async move {
                let all: BTreeSet<String> = row_counts(&context, from).await?.into_keys().collect();
                self.copy_missing_rows(&context, from, into, &all).await
            })
            .await
    }

    /// Gives the name `table` to `becomes_table` and the name `table_to` to the table that had it, in one atomic
    /// step for the product (on every node of a cluster), and returns the moment amigo sent it.
    ///
    /// In an Atomic database that is `EXCHANGE TABLES`, then a rename of the table swapped away to `table_to`: a
    /// two-table `RENAME` there is two steps, between which an insert finds no table and fails. Elsewhere
    /// (Ordinary) it is one `RENAME TABLE` of both, which also waits for inserts in flight. In Atomic databases an
    /// insert already running when the names swap still ends in the table swapped away: the caller waits for such
    /// inserts ([`MigrationContext::wait_for_inserts_begun_before`]) before copying what that table received.
    async fn rotate_names(&self, context: &MigrationContext, table: &str, table_to: &str, becomes_table: &str) -> Result<Instant> {
        let sent = Instant::now();
        for sql in rotation_sql(&context.clickhouse, table, table_to, becomes_table) {
            context.clickhouse_execute_part(&sql, &QueryOptions::default(), 0.0..0.0).await?;
        }
        Ok(sent)
    }

    /// Operation 3: the swap, idempotent so that a resume after a crash mid-way finishes it. Once the names are
    /// swapped, it waits for the inserts that were already running (they may still write into the original),
    /// then copies into the new table every row the original received since the last catch-up.
    /// Operation 3: the swap, after which the original is kept as the backup ([`MigrationContext::record_backup`]).
    async fn swap(&self, context: &MigrationContext) -> Result<()> {
        self.swap_tables(context).await?;
        context.record_backup(Some(&self.backup_table)).await
    }

    async fn swap_tables(&self, context: &MigrationContext) -> Result<()> {
        let table = self.storage_table(&context.clickhouse).await?;
        let (table, new_table, backup_table) = (table.as_str(), self.new_table.as_str(), self.backup_table.as_str());
        if self.is_rebuilt(&context.clickhouse, table).await? {
            // Swapped by an earlier attempt that died before reconciling (in an Atomic database perhaps between the
            // exchange and the rename): finish the names, then check every partition.
            if table_exists(&context.clickhouse, new_table).await? {
                rename(context, new_table, backup_table).await?;
            }
            context.wait_for_inserts_begun_before(Instant::now()).await?;
            return self.copy_all_missing_rows(context, backup_table, table).await;
        }
        let before: Arc<Mutex<BTreeMap<u32, BeforeSwap>>> = Arc::default();
        context
            .on_every_shard(|context| {
                let before = before.clone();
                async move {
                    let counts = row_counts(&context, table).await?;
                    let suspicious = self.differing_partitions(&context, table).await?.into_iter().collect();
                    before.lock().expect("before-swap lock").insert(context.shard_number(), (counts, suspicious));
                    Ok(())
                }
            })
            .await?;
        let swapped_at = self.rotate_names(context, table, backup_table, new_table).await?;
        context.wait_for_inserts_begun_before(swapped_at).await?;
        context
            .on_every_shard(|context| {
                let before = before.clone();
                async move {
                    let (before_rename, mut suspicious) =
                        before.lock().expect("before-swap lock").remove(&context.shard_number()).unwrap_or_default();
                    let after_rename = row_counts(&context, backup_table).await?;
                    suspicious
                        .extend(after_rename.iter().filter(|(id, rows)| before_rename.get(*id) != Some(rows)).map(|(id, _)| id.clone()));
                    self.copy_missing_rows(&context, backup_table, table, &suspicious).await
                }
            })
            .await
    }

    /// Rollback of operation 3: the original back under its name, with the rows inserted after the swap;
    /// idempotent like the swap.
    /// Rollback of operation 3: the swap back, after which no backup is kept.
    async fn swap_back(&self, context: &MigrationContext) -> Result<()> {
        self.swap_tables_back(context).await?;
        context.record_backup(None).await
    }

    async fn swap_tables_back(&self, context: &MigrationContext) -> Result<()> {
        let table = self.storage_table(&context.clickhouse).await?;
        let (table, new_table, backup_table) = (table.as_str(), self.new_table.as_str(), self.backup_table.as_str());
        let (new_exists, backup_exists) =
            (table_exists(&context.clickhouse, new_table).await?, table_exists(&context.clickhouse, backup_table).await?);
        if !self.is_rebuilt(&context.clickhouse, table).await? {
            if !backup_exists {
                return Ok(());
            }
            // Swapped back by an earlier attempt that died between the exchange and the rename: finish the names.
            rename(context, backup_table, new_table).await?;
            context.wait_for_inserts_begun_before(Instant::now()).await?;
            return self.copy_all_missing_rows(context, new_table, table).await;
        }
        match (new_exists, backup_exists) {
            (true, true) => {
                return Err(Error::Migration(format!(
                    "both {new_table} and {backup_table} exist next to {table}; rename them by hand so that {table} is the table to keep"
                )))
            }
            // The swap died between the exchange and the rename: the original is still called like the new table.
            (true, false) => rename(context, new_table, backup_table).await?,
            (false, true) => {}
            (false, false) => return Err(Error::Migration(format!("{backup_table} is gone: the original {table} cannot be brought back"))),
        }
        let swapped_at = self.rotate_names(context, table, new_table, backup_table).await?;
        context.wait_for_inserts_begun_before(swapped_at).await?;
        self.copy_all_missing_rows(context, new_table, table).await
    }

    /// Operation 4, on every shard: every partition of the original is whole in the new table. Row counts come
    /// from active parts (no data read): equal counts pass; a partition of the new table with more rows (inserts
    /// since the swap), or with fewer where the engine merges rows away (`ReplacingMergeTree` and the like), must
    /// hold every row identity of the original's; fewer rows otherwise fail. With `verify_checksums`, every
    /// partition's content checksum is compared too, reading both tables in full.
    async fn verify(&self, context: &MigrationContext) -> Result<()> {
        context.on_every_shard(|context| async move { self.verify_shard(&context).await }).await
    }

    async fn verify_shard(&self, context: &MigrationContext) -> Result<()> {
        let table = self.storage_table(&context.clickhouse).await?;
        let shape = table_shape(&context.clickhouse, &table).await?.ok_or_else(|| Error::Migration(format!("{table} is gone")))?;
        let merges_rows = engine_family(&shape.engine) != "MergeTree";
        let original = row_counts(context, &self.backup_table).await?;
        let migrated = row_counts(context, &table).await?;
        for (partition_id, &rows) in &original {
            let copied = migrated.get(partition_id).copied().unwrap_or(0);
            if copied == rows {
                continue;
            }
            if copied < rows && !merges_rows {
                return Err(Error::Migration(format!("partition {partition_id}: the original has {rows} rows, the new {table} {copied}")));
            }
            let lost = self.identities_missing(context, &table, partition_id).await?;
            if lost > 0 {
                return Err(Error::Migration(format!(
                    "partition {partition_id}: {lost} of the original's {rows} rows are missing from the new {table}"
                )));
            }
        }
        match &self.row_checksum {
            Some(row_checksum) if boolean_parameter(context, VERIFY_CHECKSUMS) => {
                self.verify_checksums(context, &table, row_checksum).await
            }
            _ => Ok(()),
        }
    }

    /// How many rows of the backup's partition `partition_id` have a row identity the new `table`'s lacks.
    async fn identities_missing(&self, context: &MigrationContext, table: &str, partition_id: &str) -> Result<u64> {
        let filter = partition_filter(&context.clickhouse, &self.backup_table, partition_id).await?;
        identities_missing(&context.clickhouse, &self.backup_table, table, &self.row_identity, &filter).await
    }

    /// Every partition's row count and content checksum, original against new (more rows in the new table
    /// than in the original only where inserts arrived after the swap).
    async fn verify_checksums(&self, context: &MigrationContext, table: &str, row_checksum: &str) -> Result<()> {
        let original = partition_checksums(&context.clickhouse, &self.backup_table, row_checksum).await?;
        let migrated: BTreeMap<String, _> = partition_checksums(&context.clickhouse, table, row_checksum)
            .await?
            .into_iter()
            .map(|partition| (partition.partition_id.clone(), partition))
            .collect();
        for partition in &original {
            let Some(copy) = migrated.get(&partition.partition_id) else {
                return Err(Error::Migration(format!("partition {} is missing from the new {table}", partition.partition_id)));
            };
            let intact = if copy.rows == partition.rows { copy.checksum == partition.checksum } else { copy.rows > partition.rows };
            if !intact {
                return Err(Error::Migration(format!(
                    "partition {}: the original has {} rows (checksum {}), the new {table} {} rows (checksum {})",
                    partition.partition_id, partition.rows, partition.checksum, copy.rows, copy.checksum
                )));
            }
        }
        Ok(())
    }

    /// The table whose rows are rewritten: [`RewriteTable::table`], or the table a `Distributed` one of that
    /// name reads on every shard.
    async fn storage_table(&self, clickhouse: &ClickHouse) -> Result<String> {
        let Some(shape) = table_shape(clickhouse, &self.table).await? else { return Ok(self.table.clone()) };
        if shape.engine != "Distributed" {
            return Ok(self.table.clone());
        }
        let (_, arguments) = split_engine(&shape.engine_full);
        let (Some(database), Some(local)) = (arguments.get(1), arguments.get(2)) else {
            return Err(Error::Migration(format!("cannot read which table {} reads: {}", self.table, shape.engine_full)));
        };
        if unquoted(database) != clickhouse.database() {
            return Err(Error::Migration(format!(
                "{} reads {}.{}, in another database than the product's {}; rewrite it there",
                self.table,
                unquoted(database),
                unquoted(local),
                clickhouse.database()
            )));
        }
        Ok(unquoted(local))
    }

    /// True when `shape` has every changed clause.
    fn has_changes(&self, shape: &TableShape) -> bool {
        let same = |wanted: &Option<String>, actual: &str| wanted.as_deref().is_none_or(|wanted| normalized(wanted) == normalized(actual));
        let (family, arguments) = unreplicated_engine(&shape.engine_full);
        let settings = storage_settings(&shape.engine_full);
        same(&self.order_by, &shape.sorting_key)
            && same(&self.primary_key, &shape.primary_key)
            && same(&self.sample_by, &shape.sampling_key)
            && self.engine.as_deref().is_none_or(|engine| {
                let (wanted_family, wanted_arguments) = split_engine(engine);
                wanted_family == family
                    && wanted_arguments
                        .iter()
                        .map(|argument| normalized(argument))
                        .eq(arguments.iter().map(|argument| normalized(argument)))
            })
            && self
                .settings
                .iter()
                .all(|(name, value)| settings.iter().any(|(set, actual)| set == name && normalized(actual) == normalized(value)))
    }

    /// The engine and storage clauses of the new table: the changed clauses as given, the others as `shape` has
    /// them. A replicated original's copy gets a ZooKeeper path of its own (with its replica name kept).
    fn new_storage(&self, shape: &TableShape, capabilities: &Capabilities, database: &str) -> String {
        let engine_text = engine_text(&shape.engine_full);
        let (original_name, original_arguments) = split_engine(engine_text);
        let (family, mut arguments) = match &self.engine {
            Some(engine) => split_engine(engine),
            None => unreplicated_engine(&shape.engine_full),
        };
        let mut name = family.to_string();
        if original_name.starts_with("Replicated") && !family.starts_with("Replicated") {
            name = format!("Replicated{family}");
            if let [path, replica, ..] = original_arguments.as_slice() {
                let per_shard = path.contains("{shard}");
                let new_path = capabilities.replicated_table_path(database, &self.new_table, per_shard);
                arguments.splice(0..0, [quote_string(&new_path), replica.to_string()]);
            }
        }
        let mut storage = if arguments.is_empty() { name } else { format!("{name}({})", arguments.join(", ")) };
        if !shape.partition_key.is_empty() {
            storage.push_str(&format!(" PARTITION BY {}", shape.partition_key));
        }
        let primary_key = match (&self.primary_key, &self.order_by) {
            (Some(primary_key), _) => Some(primary_key.as_str()),
            (None, Some(_)) => None,
            (None, None) => {
                Some(shape.primary_key.as_str()).filter(|primary_key| normalized(primary_key) != normalized(&shape.sorting_key))
            }
        };
        if let Some(primary_key) = primary_key.filter(|primary_key| !primary_key.is_empty()) {
            storage.push_str(&format!(" PRIMARY KEY ({})", strip_enclosing_parentheses(primary_key)));
        }
        let order_by = strip_enclosing_parentheses(self.order_by.as_deref().unwrap_or(&shape.sorting_key));
        storage.push_str(&if order_by.is_empty() { " ORDER BY tuple()".to_string() } else { format!(" ORDER BY ({order_by})") });
        if let Some(sample_by) = self.sample_by.as_deref().or(Some(shape.sampling_key.as_str()).filter(|key| !key.is_empty())) {
            storage.push_str(&format!(" SAMPLE BY {sample_by}"));
        }
        if let Some(ttl) = storage_clause(&shape.engine_full, " TTL ") {
            storage.push_str(&format!(" TTL {ttl}"));
        }
        let mut settings = storage_settings(&shape.engine_full);
        for (name, value) in &self.settings {
            match settings.iter_mut().find(|(set, _)| set == name) {
                Some(setting) => setting.1 = value.clone(),
                None => settings.push((name.clone(), value.clone())),
            }
        }
        if !settings.is_empty() {
            let settings: Vec<String> = settings.iter().map(|(name, value)| format!("{name} = {value}")).collect();
            storage.push_str(&format!(" SETTINGS {}", settings.join(", ")));
        }
        storage
    }

    /// What the rewrite changes, in words: `sort and sample keys`, `engine and settings`.
    fn changes(&self) -> String {
        let keys: Vec<&str> = [("sort", &self.order_by), ("primary", &self.primary_key), ("sample", &self.sample_by)]
            .into_iter()
            .filter(|(_, clause)| clause.is_some())
            .map(|(word, _)| word)
            .collect();
        let mut changes = Vec::new();
        match keys.as_slice() {
            [] => {}
            [key] => changes.push(format!("{key} key")),
            [first @ .., last] => changes.push(format!("{} and {last} keys", first.join(", "))),
        }
        if self.engine.is_some() {
            changes.push("engine".into());
        }
        if !self.settings.is_empty() {
            changes.push("settings".into());
        }
        match changes.as_slice() {
            [] => "definition".into(),
            [change] => change.clone(),
            [first @ .., last] => format!("{} and {last}", first.join(", ")),
        }
    }

    /// How the parameters' help names the row identity: `uuids` for `uuid`, `row identities` for an expression.
    fn identity_plural(&self) -> String {
        if self.row_identity.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            format!("{}s", self.row_identity)
        } else {
            "row identities".into()
        }
    }
}

/// `step` as an operation or check of the migration: called with the recipe and the context.
fn bound<T, Step, StepFuture>(recipe: &Arc<RewriteTable>, step: Step) -> impl Fn(MigrationContext) -> StepFuture + Send + Sync + 'static
where
    Step: Fn(Arc<RewriteTable>, MigrationContext) -> StepFuture + Send + Sync + 'static,
    StepFuture: Future<Output = Result<T>> + Send + 'static,
{
    let recipe = recipe.clone();
    move |context| step(recipe.clone(), context)
}

/// What `system.tables` says of `table` in the engine's database, or `None` when it does not exist.
async fn table_shape(clickhouse: &ClickHouse, table: &str) -> Result<Option<TableShape>> {
    Ok(clickhouse
        .client()
        .query(
            "SELECT engine, engine_full, partition_key, sorting_key, primary_key, sampling_key
             FROM system.tables WHERE database = ? AND name = ?",
        )
        .bind(clickhouse.database())
        .bind(table)
        .fetch_optional()
        .await?)
}

/// `CREATE TABLE IF NOT EXISTS name AS like` with `like`'s engine, keys, TTL and settings, on every node of a
/// cluster, a replicated `like`'s copy with a ZooKeeper path of its own: a table that partition operations
/// (`MOVE`, `REPLACE`, `ATTACH PARTITION … FROM`) accept beside `like`.
pub async fn create_table_like_sql(clickhouse: &ClickHouse, like: &str, name: &str) -> Result<String> {
    let shape = table_shape(clickhouse, like).await?.ok_or_else(|| Error::Migration(format!("{like} does not exist")))?;
    let copy = RewriteTable { table: like.to_string(), new_table: name.to_string(), ..RewriteTable::default() };
    Ok(copy.create_sql(clickhouse, like, &shape))
}

/// Renames `from` to `to` (on every node of a cluster).
async fn rename(context: &MigrationContext, from: &str, to: &str) -> Result<()> {
    context.clickhouse_execute_part(&rename_sql(&context.clickhouse, from, to), &QueryOptions::default(), 0.0..0.0).await
}

fn rename_sql(clickhouse: &ClickHouse, from: &str, to: &str) -> String {
    format!("RENAME TABLE {} TO {}{}", clickhouse.qualified(from), clickhouse.qualified(to), clickhouse.on_cluster())
}

/// The statements of [`RewriteTable::rotate_names`]: `EXCHANGE TABLES` and a rename in an Atomic database, one
/// two-table `RENAME` elsewhere.
fn rotation_sql(clickhouse: &ClickHouse, table: &str, table_to: &str, becomes_table: &str) -> Vec<String> {
    let on_cluster = clickhouse.on_cluster();
    if clickhouse.capabilities().exchanges_tables() {
        vec![
            format!("EXCHANGE TABLES {} AND {}{on_cluster}", clickhouse.qualified(table), clickhouse.qualified(becomes_table)),
            rename_sql(clickhouse, becomes_table, table_to),
        ]
    } else {
        vec![format!(
            "RENAME TABLE {table} TO {table_to}, {becomes_table} TO {table}{on_cluster}",
            table = clickhouse.qualified(table),
            table_to = clickhouse.qualified(table_to),
            becomes_table = clickhouse.qualified(becomes_table),
        )]
    }
}

/// Rows per partition id, from active parts (no data read).
async fn row_counts(context: &MigrationContext, table: &str) -> Result<BTreeMap<String, u64>> {
    Ok(partition_row_counts(&context.clickhouse, table).await?.into_iter().collect())
}

/// The health check on one server: the most active parts in a partition of `tables` against
/// [`MAX_PARTS_PER_PARTITION`].
async fn too_many_parts(clickhouse: &ClickHouse, tables: &[&str]) -> Result<CheckOutcome> {
    let (_, _, most_parts) = busiest_partition(clickhouse, tables).await?;
    Ok(if most_parts > MAX_PARTS_PER_PARTITION {
        CheckOutcome::Fail(format!(
            "a partition has {most_parts} active parts (limit {MAX_PARTS_PER_PARTITION}); let merges catch up, then resume"
        ))
    } else {
        CheckOutcome::Pass
    })
}

/// An integer parameter of the run as it is now (adjusted while it runs), or `default` where the migration does
/// not declare it.
fn integer_parameter(context: &MigrationContext, name: &str, default: i64) -> i64 {
    match context.value_now(name) {
        Some(ParameterValue::Integer(value)) => value,
        _ => default,
    }
}

/// A boolean parameter of the run, false where the migration does not declare it.
fn boolean_parameter(context: &MigrationContext, name: &str) -> bool {
    matches!(context.parameters.get(name), Some(ParameterValue::Boolean(true)))
}

/// The byte offset of `keyword` (e.g. ` ORDER BY `) in `text` outside brackets and quotes.
fn find_top_level(text: &str, keyword: &str) -> Option<usize> {
    top_level_positions(text).find(|&(index, depth)| depth == 0 && text[index..].starts_with(keyword)).map(|(index, _)| index)
}

/// The engine and its parameters at the start of `engine_full`, before the first storage clause.
fn engine_text(engine_full: &str) -> &str {
    let end = STORAGE_CLAUSES.iter().filter_map(|clause| find_top_level(engine_full, clause)).min().unwrap_or(engine_full.len());
    engine_full[..end].trim()
}

/// The text of storage clause `clause` (e.g. ` TTL `) of `engine_full`, up to the next clause, if it has one.
fn storage_clause<'a>(engine_full: &'a str, clause: &str) -> Option<&'a str> {
    let start = find_top_level(engine_full, clause)? + clause.len();
    let rest = &engine_full[start..];
    let end = STORAGE_CLAUSES.iter().filter_map(|clause| find_top_level(rest, clause)).min().unwrap_or(rest.len());
    Some(rest[..end].trim())
}

/// The `SETTINGS` of `engine_full`, each as its name and its value as printed, in order.
fn storage_settings(engine_full: &str) -> Vec<(String, String)> {
    let Some(settings) = storage_clause(engine_full, " SETTINGS ") else { return Vec::new() };
    split_top_level(settings)
        .into_iter()
        .filter_map(|setting| setting.split_once('='))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect()
}

/// An engine's name and its parameters: `ReplacingMergeTree(version)` gives `ReplacingMergeTree` and `[version]`.
fn split_engine(engine: &str) -> (&str, Vec<String>) {
    let engine = engine_text(engine);
    match engine.find('(') {
        Some(open) if engine.ends_with(')') => {
            (engine[..open].trim(), split_top_level(&engine[open + 1..engine.len() - 1]).into_iter().map(str::to_string).collect())
        }
        _ => (engine, Vec::new()),
    }
}

/// The engine of `engine_full` without replication: its family (`ReplacingMergeTree` for
/// `ReplicatedReplacingMergeTree`) and its parameters without the ZooKeeper path and replica name.
fn unreplicated_engine(engine_full: &str) -> (&str, Vec<String>) {
    let (name, arguments) = split_engine(engine_full);
    match name.strip_prefix("Replicated") {
        Some(family) => (family, arguments.into_iter().skip(2).collect()),
        None => (name, arguments),
    }
}

/// The family of engine `name`, without `Replicated`: `MergeTree` is the one engine that keeps every row.
fn engine_family(name: &str) -> &str {
    name.strip_prefix("Replicated").unwrap_or(name)
}

/// An expression as compared with what the server prints: without spaces, backticks and enclosing parentheses.
fn normalized(expression: &str) -> String {
    strip_enclosing_parentheses(expression).chars().filter(|c| !c.is_whitespace() && *c != '`').collect()
}

/// A name as an engine parameter gives it (`'db'`, `` `db` `` or `db`), unquoted.
fn unquoted(name: &str) -> String {
    let name = name.trim();
    let quoted = name.len() >= 2 && (name.starts_with('\'') && name.ends_with('\'') || name.starts_with('`') && name.ends_with('`'));
    if !quoted {
        return name.to_string();
    }
    let mut unescaped = String::new();
    let mut chars = name[1..name.len() - 1].chars();
    while let Some(c) = chars.next() {
        unescaped.push(if c == '\\' { chars.next().unwrap_or(c) } else { c });
    }
    unescaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::DatabaseEngine;

    fn shape(engine: &str, engine_full: &str, sorting_key: &str, primary_key: &str, sampling_key: &str) -> TableShape {
        TableShape {
            engine: engine.into(),
            engine_full: engine_full.into(),
            partition_key: "toYYYYMMDD(day)".into(),
            sorting_key: sorting_key.into(),
            primary_key: primary_key.into(),
            sampling_key: sampling_key.into(),
        }
    }

    fn rewrite(order_by: &str) -> RewriteTable {
        RewriteTable {
            table: "orders".into(),
            new_table: "orders_new".into(),
            backup_table: "orders_backup".into(),
            order_by: Some(order_by.into()),
            row_identity: "(id, version)".into(),
            ..RewriteTable::default()
        }
    }

    #[test]
    fn engine_full_is_taken_apart_into_its_clauses() {
        let full = "ReplacingMergeTree(version) PARTITION BY toYYYYMMDD(day) ORDER BY id TTL day + toIntervalYear(10) SETTINGS index_granularity = 1024, storage_policy = 'a, b'";
        assert_eq!(engine_text(full), "ReplacingMergeTree(version)");
        assert_eq!(storage_clause(full, " TTL "), Some("day + toIntervalYear(10)"));
        assert_eq!(storage_clause(full, " SAMPLE BY "), None);
        assert_eq!(storage_settings(full), [("index_granularity".into(), "1024".into()), ("storage_policy".into(), "'a, b'".into())]);
        assert_eq!(split_engine(full), ("ReplacingMergeTree", vec!["version".to_string()]));
        assert_eq!(split_engine("MergeTree ORDER BY x"), ("MergeTree", vec![]));
        let replicated = "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/t', '{replica}', version) ORDER BY id";
        assert_eq!(unreplicated_engine(replicated), ("ReplacingMergeTree", vec!["version".to_string()]));
    }

    #[test]
    fn the_new_table_keeps_what_the_rewrite_does_not_change() {
        let original = shape(
            "ReplacingMergeTree",
            "ReplacingMergeTree(version) PARTITION BY toYYYYMMDD(day) ORDER BY id SAMPLE BY id TTL day + toIntervalYear(10) SETTINGS index_granularity = 1024",
            "id",
            "id",
            "id",
        );
        let mut recipe = rewrite("(team_id, day, id)");
        recipe.settings.insert("index_granularity".into(), "4096".into());
        recipe.settings.insert("min_bytes_for_wide_part".into(), "0".into());
        let storage = recipe.new_storage(&original, &server("18.16.1", "Ordinary"), "shop");
        assert_eq!(
            storage,
            "ReplacingMergeTree(version) PARTITION BY toYYYYMMDD(day) ORDER BY (team_id, day, id) SAMPLE BY id TTL day + toIntervalYear(10) \
             SETTINGS index_granularity = 4096, min_bytes_for_wide_part = 0"
        );
        assert!(!recipe.has_changes(&original));
        let rebuilt = shape("ReplacingMergeTree", &storage, "team_id, day, id", "team_id, day, id", "id");
        assert!(recipe.has_changes(&rebuilt));
    }

    #[test]
    fn a_kept_primary_key_that_differs_from_the_sort_key_is_kept() {
        let original = shape("MergeTree", "MergeTree PRIMARY KEY a ORDER BY (a, b) SETTINGS index_granularity = 8192", "a, b", "a", "");
        let recipe = RewriteTable { engine: Some("ReplacingMergeTree(b)".into()), order_by: None, ..rewrite("") };
        assert_eq!(
            recipe.new_storage(&original, &server("18.16.1", "Ordinary"), "shop"),
            "ReplacingMergeTree(b) PARTITION BY toYYYYMMDD(day) PRIMARY KEY (a) ORDER BY (a, b) SETTINGS index_granularity = 8192"
        );
        assert_eq!(recipe.changes(), "engine");
    }

    #[test]
    fn changes_are_named_for_the_page() {
        let recipe = RewriteTable { sample_by: Some("cityHash64(distinct_id)".into()), ..rewrite("team_id, uuid") };
        assert_eq!(recipe.changes(), "sort and sample keys");
        let recipe = RewriteTable { settings: [("index_granularity".into(), "1".into())].into(), ..recipe };
        assert_eq!(recipe.changes(), "sort and sample keys and settings");
        assert_eq!(rewrite("a").identity_plural(), "row identities");
        assert_eq!(RewriteTable { row_identity: "uuid".into(), ..rewrite("a") }.identity_plural(), "uuids");
    }

    #[test]
    fn a_rewrite_reads_from_a_migration_file() {
        let file = r#"
            table = "orders"
            new_table = "orders_new"
            backup_table = "orders_backup"
            order_by = "(team_id, day, id)"
            row_identity = "(id, version)"
            settings = { index_granularity = "4096" }
        "#;
        let recipe: RewriteTable = toml::from_str(file).unwrap();
        assert_eq!(
            recipe,
            RewriteTable {
                order_by: Some("(team_id, day, id)".into()),
                settings: [("index_granularity".into(), "4096".into())].into(),
                ..rewrite("")
            }
        );
        assert!(toml::from_str::<RewriteTable>(&format!("{file}\nsort_key = \"id\"")).is_err(), "unknown keys are refused");
    }

    #[test]
    fn names_in_engine_parameters_are_unquoted() {
        assert_eq!(unquoted("'amigo'"), "amigo");
        assert_eq!(unquoted("`orders_local`"), "orders_local");
        assert_eq!(unquoted(r"'it\'s'"), "it's");
        assert_eq!(unquoted("plain"), "plain");
    }

    #[test]
    fn a_replicated_copy_gets_a_path_of_its_own_and_keeps_the_replica_name() {
        let original = shape(
            "ReplicatedMergeTree",
            "ReplicatedMergeTree('/clickhouse/tables/{shard}/shop/orders_local', '{replica}') PARTITION BY toYYYYMMDD(day) ORDER BY id",
            "id",
            "id",
            "",
        );
        let recipe = RewriteTable { engine: Some("ReplacingMergeTree(version)".into()), ..rewrite("team_id, id") };
        assert_eq!(
            recipe.new_storage(&original, &server("18.16.1", "Ordinary"), "shop"),
            "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/shop/orders_new', '{replica}', version) PARTITION BY toYYYYMMDD(day) ORDER BY (team_id, id)"
        );
        assert_eq!(
            rewrite("team_id, id").new_storage(&original, &server("26.9.2.1", "Atomic"), "shop"),
            "ReplicatedMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}') PARTITION BY toYYYYMMDD(day) ORDER BY (team_id, id)"
        );
    }

    fn server(version: &str, database_engine: &str) -> Capabilities {
        Capabilities::new(crate::version::Version::parse(version).unwrap(), DatabaseEngine::from_name(database_engine), Vec::new())
    }
}
