//! 0001_events_sort_key: gives `events` a sort key that starts with the columns queries filter on and a
//! sample key, by building a new table and copying every partition into it.
//!
//! ClickHouse cannot change a MergeTree table's sort key in place, so:
//! 0. create `events_0001_new` with the new keys;
//! 1. copy `events` into it one partition at a time (`INSERT ... SELECT`), saving a checkpoint after each
//!    partition so a resume continues from the next one, and pausing before a partition while ClickHouse
//!    is under pressure (too many parts, a merge backlog, low disk: see `pressure.rs`);
//! 2. catch up: partitions whose row count changed while the copy ran (the product keeps inserting) are
//!    copied again, a bounded number of passes;
//! 3. swap the names atomically, keeping the original as `events_0001_backup` (`EXCHANGE TABLES` in an Atomic
//!    database, one two-table `RENAME TABLE` in an Ordinary one: no insert finds `events` missing), wait
//!    until no insert begun before the swap is still running (in an Atomic database such an insert ends in
//!    the original), then copy into the new `events` the rows the original received between the last
//!    catch-up and the swap (by `uuid`, only in partitions whose count moved);
//! 4. verify every partition: the new table holds every row of the original, checked by row counts from
//!    the active parts, by `uuid` where the new table has more rows (inserts since the swap), and, with
//!    `verify_checksums`, by a checksum of every row's content.
//!
//! Nothing is deleted: the original stays as `events_0001_backup` until an admin drops it. Rollback renames
//! it back (copying over rows inserted after the swap) and drops the new table.
//!
//! On a cluster the table rebuilt is `events_local`, the `ReplicatedMergeTree` behind the `Distributed`
//! `events`: the new table is created and the names are swapped on every node (`ON CLUSTER`); the copy, the
//! catch-up, the reconciliation after the swap and the verification run on every shard at once, on one
//! replica each (replication copies the rest), each shard with its own checkpoint, and row counts are
//! compared shard by shard.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::json;

use crate::clickhouse::{ClickHouse, QueryOptions};
use crate::context::MigrationContext;
use crate::definition::{nothing_to_undo, CheckOutcome, MigrationDefinition, Operation};
use crate::demo::{events_partition_checksums, events_storage_table};
use crate::parameters::{quote_string, ParameterSpec};
use crate::pressure::{busiest_partition, clickhouse_pressure};
use crate::tables::{partition_row_counts, table_engine, table_exists};
use crate::{Error, Result};

pub const NAME: &str = "0001_events_sort_key";
const NEW_TABLE: &str = "events_0001_new";
const BACKUP_TABLE: &str = "events_0001_backup";
const SORTING_KEY: &str = "team_id, toDate(timestamp), event, cityHash64(distinct_id), uuid";
const SAMPLING_KEY: &str = "cityHash64(distinct_id)";
/// Active parts in one partition above which the health check stops the copy (inserts start to fail at 300).
const MAX_PARTS_PER_PARTITION: u64 = 250;
/// How long a node of a cluster may take to answer the health check.
const NODE_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub fn definition() -> MigrationDefinition {
    MigrationDefinition::new(
        NAME,
        "Give the events table the sort key (team_id, day, event, distinct_id hash, uuid) and a sample key, copying it partition by partition into a new table",
    )
    .versions("0.1.0", "0.4.0")
    .requires_clickhouse("18.16")
    .parameter(ParameterSpec::integer(
        "max_threads",
        "Threads ClickHouse may use for each partition's copy; 0 leaves the server's default",
        0,
        0,
        256,
    ))
    .parameter(ParameterSpec::integer(
        "catch_up_passes",
        "How many times partitions that received inserts during the copy are copied again before the swap",
        3,
        1,
        20,
    ))
    .parameter(ParameterSpec::boolean(
        "verify_checksums",
        "After the swap, also compare a checksum of every row of every partition (reads both tables in full: about a tenth of the migration's time); row counts and, where the new table has more rows, uuids are always checked",
        false,
    ))
    .is_required(is_required)
    .precheck(precheck)
    .health_check(health_check)
    .throttle(|context| async move { clickhouse_pressure(&context.clickhouse, &[events(&context), NEW_TABLE]).await })
    .operation(Operation::rust("create events_0001_new with the new sort and sample keys", create_new_table, drop_new_table))
    .operation(Operation::rust("copy events into it, partition by partition", copy_partitions, nothing_to_undo))
    .operation(Operation::rust("copy again the partitions that received inserts meanwhile", catch_up, nothing_to_undo))
    .operation(Operation::rust("swap the tables, keeping the original as events_0001_backup", swap, swap_back))
    .operation(Operation::rust("verify every partition of the original is whole in the new table", verify, nothing_to_undo))
}

/// The table rebuilt: `events`, or on a cluster the `events_local` behind it.
fn events(context: &MigrationContext) -> &'static str {
    events_storage_table(&context.clickhouse)
}

/// Operation 0 (on every node of a cluster).
async fn create_new_table(context: MigrationContext) -> Result<()> {
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {}{} AS {} ENGINE = {} PARTITION BY toYYYYMM(timestamp) ORDER BY ({SORTING_KEY}) SAMPLE BY {SAMPLING_KEY}",
        context.clickhouse.qualified(NEW_TABLE),
        context.clickhouse.on_cluster(),
        context.clickhouse.qualified(events(&context)),
        table_engine(&context.clickhouse, "MergeTree", NEW_TABLE, true),
    );
    context.clickhouse_execute(&sql, &QueryOptions::default()).await
}

async fn drop_new_table(context: MigrationContext) -> Result<()> {
    let sql = context.clickhouse.drop_table_sql(&context.clickhouse.qualified(NEW_TABLE));
    context.clickhouse_execute(&sql, &QueryOptions::default()).await
}

/// Needed when `events` exists and does not have the new sampling key yet.
async fn is_required(context: MigrationContext) -> Result<bool> {
    Ok(table_exists(&context.clickhouse, events(&context)).await? && !is_rebuilt(&context, events(&context)).await?)
}

/// True when `table` has the new sampling key: it is the rebuilt table (the original has none).
async fn is_rebuilt(context: &MigrationContext, table: &str) -> Result<bool> {
    let sampling_key: String = context
        .clickhouse
        .client()
        .query("SELECT sampling_key FROM system.tables WHERE database = ? AND name = ?")
        .bind(context.clickhouse.database())
        .bind(table)
        .fetch_one()
        .await?;
    Ok(sampling_key.replace(' ', "") == SAMPLING_KEY.replace(' ', ""))
}

/// The copy needs as much free disk as `events` takes, plus a margin; servers without `system.disks`
/// (before 19.15) cannot tell, and pass.
async fn precheck(context: MigrationContext) -> Result<CheckOutcome> {
    if !table_exists(&context.clickhouse, events(&context)).await? {
        return Ok(CheckOutcome::Fail(format!("{}.{} does not exist", context.clickhouse.database(), events(&context))));
    }
    if !context.clickhouse.capabilities().reports_disks() {
        return Ok(CheckOutcome::Pass);
    }
    let needed: u64 = context
        .clickhouse
        .client()
        .query("SELECT toUInt64(sum(bytes_on_disk) * 1.2) FROM system.parts WHERE database = ? AND table = ? AND active")
        .bind(context.clickhouse.database())
        .bind(events(&context))
        .fetch_one()
        .await?;
    let free: u64 = context.clickhouse.client().query("SELECT min(free_space) FROM system.disks").fetch_one().await?;
    Ok(if free >= needed {
        CheckOutcome::Pass
    } else {
        CheckOutcome::Fail(format!("{free} bytes free on disk, and the copy needs {needed}; free some space first"))
    })
}

/// Fails when a partition of either table has so many active parts that inserts would soon be refused: on
/// the server, or on any node of a cluster that answers (a node that does not fails its shard's statements,
/// which is the shard watch's business).
async fn health_check(context: MigrationContext) -> Result<CheckOutcome> {
    let tables = [events(&context), NEW_TABLE];
    let Some(cluster) = &context.cluster else {
        return too_many_parts(&context.clickhouse, &tables).await;
    };
    for node in cluster.nodes() {
        match tokio::time::timeout(NODE_CHECK_TIMEOUT, too_many_parts(&node.clickhouse, &tables)).await {
            Ok(Ok(CheckOutcome::Pass)) => {}
            Ok(Ok(CheckOutcome::Fail(reason))) => return Ok(CheckOutcome::Fail(format!("node {}: {reason}", node.address))),
            Ok(Err(error)) => tracing::warn!(node = %node.address, %error, "the health check cannot read this node's parts"),
            Err(_) => tracing::warn!(node = %node.address, "the health check got no answer from this node within {NODE_CHECK_TIMEOUT:?}"),
        }
    }
    Ok(CheckOutcome::Pass)
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

fn copy_options(context: &MigrationContext) -> QueryOptions {
    let max_threads = context.parameters.integer("max_threads");
    let settings = if max_threads > 0 { vec![("max_threads".to_string(), max_threads.to_string())] } else { Vec::new() };
    QueryOptions { settings, timeout: None }
}

/// Rows per partition id, from active parts (no data read).
async fn row_counts(context: &MigrationContext, name: &str) -> Result<BTreeMap<String, u64>> {
    Ok(partition_row_counts(&context.clickhouse, name).await?.into_iter().collect())
}

/// The `toYYYYMM(timestamp)` month a partition id stands for.
fn partition_month(partition_id: &str) -> Result<u32> {
    partition_id
        .parse()
        .map_err(|_| Error::Migration(format!("events has partition {partition_id:?}, which is not a toYYYYMM(timestamp) month")))
}

/// Replaces partition `partition_id` of the new table with a fresh copy of the same partition of `events`.
/// Partition ids are `toYYYYMM(timestamp)` values; the `WHERE` on the partition expression lets ClickHouse
/// read that partition only.
async fn copy_partition(context: &MigrationContext, partition_id: &str, span: std::ops::Range<f64>) -> Result<()> {
    let month = partition_month(partition_id)?;
    let new_table = context.clickhouse.qualified(NEW_TABLE);
    context
        .clickhouse_execute_part(
            &format!("ALTER TABLE {new_table} DROP PARTITION ID {}", quote_string(partition_id)),
            &QueryOptions::default(),
            span.start..span.start,
        )
        .await?;
    context
        .clickhouse_execute_part(
            &format!(
                "INSERT INTO {new_table} SELECT * FROM {} WHERE toYYYYMM(timestamp) = {month}",
                context.clickhouse.qualified(events(context))
            ),
            &copy_options(context),
            span,
        )
        .await
}

/// Operation 1: on every shard, every partition of `events`, in order, skipping those the checkpoint lists as
/// copied.
async fn copy_partitions(context: MigrationContext) -> Result<()> {
    context.on_every_shard(copy_partitions_of_shard).await
}

async fn copy_partitions_of_shard(context: MigrationContext) -> Result<()> {
    let source_rows = row_counts(&context, events(&context)).await?;
    let partitions: Vec<String> = source_rows.keys().cloned().collect();
    let mut copied: BTreeSet<String> =
        context.checkpoint().and_then(|checkpoint| serde_json::from_value(checkpoint["copied"].clone()).ok()).unwrap_or_default();
    let total = partitions.len().max(1) as f64;
    for (index, partition_id) in partitions.iter().enumerate() {
        if copied.contains(partition_id) {
            continue;
        }
        context.pause_while_under_pressure().await?;
        copy_partition(&context, partition_id, index as f64 / total..(index + 1) as f64 / total).await?;
        copied.insert(partition_id.clone());
        context.save_checkpoint(json!({ "copied": copied })).await?;
        context.record_rows_copied(copied.iter().filter_map(|partition_id| source_rows.get(partition_id)).sum()).await?;
        context.report_progress((index + 1) as f64 / total).await?;
    }
    Ok(())
}

/// Partitions whose row counts differ between `events` and the new table.
async fn differing_partitions(context: &MigrationContext) -> Result<Vec<String>> {
    let source = row_counts(context, events(context)).await?;
    let copy = row_counts(context, NEW_TABLE).await?;
    Ok(source.into_iter().filter(|(partition_id, rows)| copy.get(partition_id) != Some(rows)).map(|(id, _)| id).collect())
}

/// Operation 2: on every shard, copies again what changed during the copy, until nothing did or the passes
/// run out (the swap reconciles what is left).
async fn catch_up(context: MigrationContext) -> Result<()> {
    context.on_every_shard(catch_up_shard).await
}

async fn catch_up_shard(context: MigrationContext) -> Result<()> {
    let passes = context.parameters.integer("catch_up_passes");
    for pass in 0..passes {
        let changed = differing_partitions(&context).await?;
        if changed.is_empty() {
            break;
        }
        tracing::info!(migration = NAME, pass, partitions = ?changed, "copying again partitions that received inserts");
        for partition_id in &changed {
            copy_partition(&context, partition_id, 0.0..0.0).await?;
        }
        context.report_progress((pass + 1) as f64 / passes as f64).await?;
    }
    Ok(())
}

/// Copies into `into` the rows of `from` (by uuid) that `into` lacks, in the given partitions.
async fn copy_missing_rows(context: &MigrationContext, from: &str, into: &str, partitions: &BTreeSet<String>) -> Result<()> {
    for partition_id in partitions {
        let month = partition_month(partition_id)?;
        let (from, into) = (context.clickhouse.qualified(from), context.clickhouse.qualified(into));
        context
            .clickhouse_execute_part(
                &format!(
                    "INSERT INTO {into} SELECT * FROM {from} WHERE toYYYYMM(timestamp) = {month}
                     AND uuid NOT IN (SELECT uuid FROM {into} WHERE toYYYYMM(timestamp) = {month})"
                ),
                &copy_options(context),
                0.0..0.0,
            )
            .await?;
    }
    Ok(())
}

/// Copies into `into` the rows of `from` that it lacks, in every partition of `from`, on every shard.
async fn copy_all_missing_rows(context: &MigrationContext, from: &'static str, into: &'static str) -> Result<()> {
    context
        .on_every_shard(|context| async move {
            let all: BTreeSet<String> = row_counts(&context, from).await?.into_keys().collect();
            copy_missing_rows(&context, from, into, &all).await
        })
        .await
}

/// Renames `from` to `to` (on every node of a cluster).
async fn rename(context: &MigrationContext, from: &str, to: &str) -> Result<()> {
    let clickhouse = &context.clickhouse;
    let sql = format!("RENAME TABLE {} TO {}{}", clickhouse.qualified(from), clickhouse.qualified(to), clickhouse.on_cluster());
    context.clickhouse_execute_part(&sql, &QueryOptions::default(), 0.0..0.0).await
}

/// Gives the name `events` to `becomes_events` and the name `events_to` to the table that had it, in one
/// atomic step for the product (on every node of a cluster), and returns the moment amigo sent it.
///
/// In an Atomic database that is `EXCHANGE TABLES`, then a rename of the table swapped away to `events_to`: a
/// two-table `RENAME` there is two steps, between which an insert finds no `events` and fails. Elsewhere
/// (Ordinary) it is one `RENAME TABLE` of both, which also waits for inserts in flight. In Atomic databases an
/// insert already running when the names swap still ends in the table swapped away: the caller waits for such
/// inserts ([`MigrationContext::wait_for_inserts_begun_before`]) before copying what that table received.
async fn rotate_names(context: &MigrationContext, events_to: &str, becomes_events: &str) -> Result<Instant> {
    let clickhouse = &context.clickhouse;
    let (events, events_to_name, becomes_events_name) = (events(context), events_to, becomes_events);
    let (qualified_events, events_to, becomes_events) =
        (clickhouse.qualified(events), clickhouse.qualified(events_to), clickhouse.qualified(becomes_events));
    let on_cluster = clickhouse.on_cluster();
    let sent = Instant::now();
    if clickhouse.capabilities().exchanges_tables() {
        let exchange = format!("EXCHANGE TABLES {qualified_events} AND {becomes_events}{on_cluster}");
        context.clickhouse_execute_part(&exchange, &QueryOptions::default(), 0.0..0.0).await?;
        rename(context, becomes_events_name, events_to_name).await?;
    } else {
        let both = format!("RENAME TABLE {qualified_events} TO {events_to}, {becomes_events} TO {qualified_events}{on_cluster}");
        context.clickhouse_execute_part(&both, &QueryOptions::default(), 0.0..0.0).await?;
    }
    Ok(sent)
}

/// What a shard's tables held just before the swap: rows per partition of `events`, and the partitions that
/// differed from the new table's.
type BeforeSwap = (BTreeMap<String, u64>, BTreeSet<String>);

/// Operation 3: the swap, idempotent so that a resume after a crash mid-way finishes it. Once the names are
/// swapped, it waits for the inserts that were already running (they may still write into the original),
/// then copies into the new `events` every row the original received since the last catch-up.
async fn swap(context: MigrationContext) -> Result<()> {
    let events = events(&context);
    if is_rebuilt(&context, events).await? {
        // Swapped by an earlier attempt that died before reconciling (in an Atomic database perhaps between the
        // exchange and the rename): finish the names, then check every partition.
        if table_exists(&context.clickhouse, NEW_TABLE).await? {
            rename(&context, NEW_TABLE, BACKUP_TABLE).await?;
        }
        context.wait_for_inserts_begun_before(Instant::now()).await?;
        return copy_all_missing_rows(&context, BACKUP_TABLE, events).await;
    }
    let before: Arc<Mutex<BTreeMap<u32, BeforeSwap>>> = Arc::default();
    context
        .on_every_shard(|context| {
            let before = before.clone();
            async move {
                let counts = row_counts(&context, events).await?;
                let suspicious = differing_partitions(&context).await?.into_iter().collect();
                before.lock().expect("before-swap lock").insert(context.shard_number(), (counts, suspicious));
                Ok(())
            }
        })
        .await?;
    let swapped_at = rotate_names(&context, BACKUP_TABLE, NEW_TABLE).await?;
    context.wait_for_inserts_begun_before(swapped_at).await?;
    context
        .on_every_shard(|context| {
            let before = before.clone();
            async move {
                let (before_rename, mut suspicious) =
                    before.lock().expect("before-swap lock").remove(&context.shard_number()).unwrap_or_default();
                let after_rename = row_counts(&context, BACKUP_TABLE).await?;
                suspicious.extend(after_rename.iter().filter(|(id, rows)| before_rename.get(*id) != Some(rows)).map(|(id, _)| id.clone()));
                copy_missing_rows(&context, BACKUP_TABLE, events, &suspicious).await
            }
        })
        .await
}

/// Rollback of operation 3: the original back under its name, with the rows inserted after the swap;
/// idempotent like the swap.
async fn swap_back(context: MigrationContext) -> Result<()> {
    let events = events(&context);
    let (new_exists, backup_exists) =
        (table_exists(&context.clickhouse, NEW_TABLE).await?, table_exists(&context.clickhouse, BACKUP_TABLE).await?);
    if !is_rebuilt(&context, events).await? {
        if !backup_exists {
            return Ok(());
        }
        // Swapped back by an earlier attempt that died between the exchange and the rename: finish the names.
        rename(&context, BACKUP_TABLE, NEW_TABLE).await?;
        context.wait_for_inserts_begun_before(Instant::now()).await?;
        return copy_all_missing_rows(&context, NEW_TABLE, events).await;
    }
    match (new_exists, backup_exists) {
        (true, true) => {
            return Err(Error::Migration(format!(
                "both {NEW_TABLE} and {BACKUP_TABLE} exist next to {events}; rename them by hand so that {events} is the table to keep"
            )))
        }
        // The swap died between the exchange and the rename: the original is still called events_0001_new.
        (true, false) => rename(&context, NEW_TABLE, BACKUP_TABLE).await?,
        (false, true) => {}
        (false, false) => return Err(Error::Migration(format!("{BACKUP_TABLE} is gone: the original {events} cannot be brought back"))),
    }
    let swapped_at = rotate_names(&context, NEW_TABLE, BACKUP_TABLE).await?;
    context.wait_for_inserts_begun_before(swapped_at).await?;
    copy_all_missing_rows(&context, NEW_TABLE, events).await
}

/// Operation 4, on every shard: every partition of the original is whole in the new table. Row counts come
/// from active parts (no data read): equal counts pass; a partition of the new table with more rows (inserts
/// since the swap) must hold every `uuid` of the original's; fewer rows fail. With `verify_checksums`, every
/// partition's content checksum is compared too, reading both tables in full.
async fn verify(context: MigrationContext) -> Result<()> {
    context.on_every_shard(verify_shard).await
}

async fn verify_shard(context: MigrationContext) -> Result<()> {
    let events = events(&context);
    let original = row_counts(&context, BACKUP_TABLE).await?;
    let migrated = row_counts(&context, events).await?;
    for (partition_id, &rows) in &original {
        let copied = migrated.get(partition_id).copied().unwrap_or(0);
        if copied < rows {
            return Err(Error::Migration(format!("partition {partition_id}: the original has {rows} rows, the new {events} {copied}")));
        }
        if copied > rows {
            let lost = uuids_missing(&context, partition_id).await?;
            if lost > 0 {
                return Err(Error::Migration(format!(
                    "partition {partition_id}: {lost} of the original's {rows} rows are missing from the new {events}"
                )));
            }
        }
    }
    if context.parameters.boolean("verify_checksums") {
        verify_checksums(&context).await?;
    }
    Ok(())
}

/// How many rows of the original's partition `partition_id` have a `uuid` the new table's lacks.
async fn uuids_missing(context: &MigrationContext, partition_id: &str) -> Result<u64> {
    let month = partition_month(partition_id)?;
    let (original, migrated) = (context.clickhouse.qualified(BACKUP_TABLE), context.clickhouse.qualified(events(context)));
    Ok(context
        .clickhouse
        .client()
        .query(&format!(
            "SELECT count() FROM {original} WHERE toYYYYMM(timestamp) = {month}
             AND uuid NOT IN (SELECT uuid FROM {migrated} WHERE toYYYYMM(timestamp) = {month})"
        ))
        .fetch_one()
        .await?)
}

/// Every partition's row count and content checksum, original against new (more rows in the new table
/// than in the original only where inserts arrived after the swap).
async fn verify_checksums(context: &MigrationContext) -> Result<()> {
    let events = events(context);
    let original = events_partition_checksums(&context.clickhouse, BACKUP_TABLE).await?;
    let migrated: BTreeMap<String, _> = events_partition_checksums(&context.clickhouse, events)
        .await?
        .into_iter()
        .map(|partition| (partition.partition_id.clone(), partition))
        .collect();
    for partition in &original {
        let Some(copy) = migrated.get(&partition.partition_id) else {
            return Err(Error::Migration(format!("partition {} is missing from the new {events}", partition.partition_id)));
        };
        let intact = if copy.rows == partition.rows { copy.checksum == partition.checksum } else { copy.rows > partition.rows };
        if !intact {
            return Err(Error::Migration(format!(
                "partition {}: the original has {} rows (checksum {}), the new {events} {} rows (checksum {})",
                partition.partition_id, partition.rows, partition.checksum, copy.rows, copy.checksum
            )));
        }
    }
    Ok(())
}
