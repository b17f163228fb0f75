//! 0003_move_old_partitions: moves the months of `events` older than `older_than_months` into an archive
//! table `events_archive` of the same structure, with partition operations (no row is re-sorted).
//!
//! 0. create `events_archive` `AS events` (same columns, engine and keys, as partition operations require);
//! 1. move every partition of `events` whose whole month is older than `older_than_months`, oldest first,
//!    one at a time; the checkpoint lists the months moved and the cutoff month, fixed at the first attempt.
//!
//! Each partition moves with the move-partitions recipe (`recipes/move_partitions.rs`): one `MOVE PARTITION
//! ... TO TABLE` where the server has it (20.2) and the archive's partition is empty, otherwise copy, verify,
//! drop (rows identified by `uuid`), so that a crash at any point loses nothing and a resume redoes the
//! partition from what the tables hold, whatever the checkpoint says.
//!
//! Rollback moves every partition of the archive back into `events` the same way, then drops the archive,
//! which it refuses to do while the archive still holds rows.
//!
//! The one window left on old servers: a row inserted into a partition between its verification and its
//! `DROP PARTITION` (a few milliseconds) is lost. Partitions older than `older_than_months` must not receive
//! inserts; a partition that changes during its move is copied again, and after three tries the operation
//! fails without dropping it.
//!
//! On a cluster the months move shard by shard, on the least lagging writable replica of each (the moves are
//! replicated `ALTER`s that reach the other replica through ZooKeeper), from `events_local` into
//! `events_archive_local`, a replicated table with a ZooKeeper path of its own; `events_archive` is a
//! `Distributed` table over it, as `events` is over `events_local`. Each shard keeps its own checkpoint, and
//! rollback moves every shard's months back.
//!
//! It depends on 0002_backfill_person_id, so that the archive is made with `person_id` and with 0001's sort
//! key: partition operations need both tables to have the same structure and keys.

use chrono::{DateTime, Datelike, Months, Utc};
use serde_json::json;

use crate::migrations::backfill_person_id;
use crate::{distributed_events_sql, events_storage_table};
use engine::clickhouse::QueryOptions;
use engine::context::MigrationContext;
use engine::definition::{CheckOutcome, MigrationDefinition, Operation};
use engine::parameters::ParameterSpec;
use engine::recipes::move_partitions::MovePartitions;
use engine::recipes::rewrite_table::create_table_like_sql;
use engine::tables::{partition_row_counts, row_count, table_exists};
use engine::{Error, Result};

pub const NAME: &str = "0003_move_old_partitions";
const EVENTS: &str = "events";
pub const ARCHIVE: &str = "events_archive";
/// On a cluster, the replicated table behind the `Distributed` [`ARCHIVE`] on each node.
pub const ARCHIVE_LOCAL: &str = "events_archive_local";
/// How partitions move between `events` and the archive: rows identified by their uuid.
fn moves() -> MovePartitions {
    MovePartitions { row_identity: "uuid".into() }
}

pub fn definition() -> MigrationDefinition {
    MigrationDefinition::new(NAME, "Move the months of events older than a number of months into events_archive, partition by partition")
        .versions("0.1.0", "0.5.0")
        .requires_clickhouse("18.16")
        .depends_on(backfill_person_id::NAME)
        .parameter(ParameterSpec::integer(
            "older_than_months",
            "A month of events moves when every one of its events is older than this many months",
            12,
            1,
            1200,
        ))
        .is_required(is_required)
        .precheck(precheck)
        .throttle(|context| async move {
            let tables = [events_storage_table(&context.clickhouse), archive_storage_table(&context.clickhouse)];
            context.clickhouse_pressure(&tables).await
        })
        .operation(Operation::rust("create events_archive with the structure and keys of events", create_archive, drop_empty_archive))
        .operation(Operation::rust(
            "move the partitions older than older_than_months into events_archive, one at a time",
            move_old_partitions,
            move_everything_back,
        ))
}

/// Needed when `events` exists and `events_archive` does not.
async fn is_required(context: MigrationContext) -> Result<bool> {
    Ok(table_exists(&context.clickhouse, EVENTS).await? && !table_exists(&context.clickhouse, ARCHIVE).await?)
}

/// The table that holds the archive's rows: [`ARCHIVE`], or on a cluster [`ARCHIVE_LOCAL`] on each shard.
fn archive_storage_table(clickhouse: &engine::clickhouse::ClickHouse) -> &'static str {
    if clickhouse.cluster().is_some() {
        ARCHIVE_LOCAL
    } else {
        ARCHIVE
    }
}

/// Everything in the archive must have come from this migration, since rollback moves all of it into events.
async fn precheck(context: MigrationContext) -> Result<CheckOutcome> {
    let database = context.clickhouse.database();
    if !table_exists(&context.clickhouse, EVENTS).await? {
        return Ok(CheckOutcome::Fail(format!("{database}.{EVENTS} does not exist")));
    }
    let archived = archived_rows(&context).await?;
    Ok(if archived > 0 {
        CheckOutcome::Fail(format!(
            "{database}.{ARCHIVE} already holds {archived} rows; this migration creates it, and its rollback moves all of it \
             into {EVENTS}: rename it first"
        ))
    } else {
        CheckOutcome::Pass
    })
}

/// The month (`YYYYMM`) `months` months before `now`: a partition moves when its month is before it, that is
/// when its last second is at least `months` months old.
pub fn cutoff_month(now: DateTime<Utc>, months: u32) -> u32 {
    let cutoff = now.checked_sub_months(Months::new(months)).unwrap_or(DateTime::<Utc>::MIN_UTC);
    cutoff.year().max(0) as u32 * 100 + cutoff.month()
}

/// Months (partition ids of `toYYYYMM(timestamp)`) holding rows in `name`, oldest first.
async fn months_with_rows(context: &MigrationContext, name: &str) -> Result<Vec<u32>> {
    let mut months = Vec::new();
    for (partition_id, rows) in partition_row_counts(&context.clickhouse, name).await? {
        if rows == 0 {
            continue;
        }
        let month = partition_id
            .parse()
            .map_err(|_| Error::Migration(format!("{name} has partition {partition_id:?}, which is not a toYYYYMM(timestamp) month")))?;
        months.push(month);
    }
    Ok(months)
}

/// Rows in the archive (of every shard, through the `Distributed` archive on a cluster), 0 while it does not exist.
async fn archived_rows(context: &MigrationContext) -> Result<u64> {
    if !table_exists(&context.clickhouse, ARCHIVE).await? {
        return Ok(0);
    }
    row_count(&context.clickhouse, ARCHIVE).await
}

/// Operation 0: the archive with the structure and keys of the events' storage; on a cluster, the replicated
/// archive on every node (a ZooKeeper path of its own) and the `Distributed` one over it.
async fn create_archive(context: MigrationContext) -> Result<()> {
    let clickhouse = &context.clickhouse;
    let storage = archive_storage_table(clickhouse);
    let create = create_table_like_sql(clickhouse, events_storage_table(clickhouse), storage).await?;
    context.clickhouse_execute(&create, &QueryOptions::default()).await?;
    if clickhouse.cluster().is_some() {
        context.clickhouse_execute(&distributed_events_sql(clickhouse, ARCHIVE, storage), &QueryOptions::default()).await?;
    }
    Ok(())
}

/// Rollback of operation 0: drops the archive (its `Distributed` table first on a cluster), never while it holds
/// rows.
async fn drop_empty_archive(context: MigrationContext) -> Result<()> {
    let clickhouse = &context.clickhouse;
    let archived = archived_rows(&context).await?;
    if archived > 0 {
        return Err(Error::Migration(format!("{ARCHIVE} still holds {archived} rows; it is dropped only once they are back in {EVENTS}")));
    }
    let tables = if clickhouse.cluster().is_some() { &[ARCHIVE, ARCHIVE_LOCAL][..] } else { &[ARCHIVE][..] };
    for table in tables {
        context.clickhouse_execute(&clickhouse.drop_table_sql(&clickhouse.qualified(table)), &QueryOptions::default()).await?;
    }
    Ok(())
}

/// Operation 1, on every shard: every month before the cutoff, oldest first. A month already moved is moved
/// again only if rows arrived in it since.
async fn move_old_partitions(context: MigrationContext) -> Result<()> {
    context.on_every_shard(|context| async move { move_old_partitions_of_shard(&context).await }).await
}

async fn move_old_partitions_of_shard(context: &MigrationContext) -> Result<()> {
    let (events, archive) = (events_storage_table(&context.clickhouse), archive_storage_table(&context.clickhouse));
    let checkpoint = context.checkpoint().unwrap_or_default();
    let older_than = context.parameters.integer("older_than_months") as u32;
    let before_month = checkpoint["before_month"].as_u64().map_or_else(|| cutoff_month(Utc::now(), older_than), |month| month as u32);
    let mut moved: Vec<u32> = serde_json::from_value(checkpoint["moved"].clone()).unwrap_or_default();
    let to_move: Vec<u32> = months_with_rows(context, events).await?.into_iter().filter(|month| *month < before_month).collect();
    context.save_checkpoint(json!({ "before_month": before_month, "moved": moved })).await?;
    let total = (moved.len() + to_move.len()).max(1) as f64;
    for month in to_move {
        context.hold_between_units().await?;
        let done = moved.len() as f64;
        moves().move_partition(context, events, archive, &month.to_string(), done / total..(done + 1.0) / total).await?;
        if !moved.contains(&month) {
            moved.push(month);
        }
        context.save_checkpoint(json!({ "before_month": before_month, "moved": moved })).await?;
        context.report_progress(moved.len() as f64 / total).await?;
    }
    Ok(())
}

/// Rollback of operation 1, on every shard: every month of the archive back into the events.
async fn move_everything_back(context: MigrationContext) -> Result<()> {
    context.on_every_shard(|context| async move { move_everything_back_on_shard(&context).await }).await
}

async fn move_everything_back_on_shard(context: &MigrationContext) -> Result<()> {
    let (events, archive) = (events_storage_table(&context.clickhouse), archive_storage_table(&context.clickhouse));
    if !table_exists(&context.clickhouse, archive).await? {
        return Ok(());
    }
    let months = months_with_rows(context, archive).await?;
    let total = months.len().max(1) as f64;
    for (index, month) in months.into_iter().enumerate() {
        moves().move_partition(context, archive, events, &month.to_string(), index as f64 / total..(index + 1) as f64 / total).await?;
        context.report_progress((index + 1) as f64 / total).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn a_month_moves_once_its_last_second_is_old_enough() {
        // On 2024-06-15 with 12 months: May 2023 ended on 2023-06-01, more than 12 months ago; June 2023 did not.
        assert_eq!(cutoff_month(at("2024-06-15T10:00:00Z"), 12), 202306);
        assert_eq!(cutoff_month(at("2024-01-31T00:00:00Z"), 1), 202312);
        assert_eq!(cutoff_month(at("2024-03-31T00:00:00Z"), 1), 202402);
        assert_eq!(cutoff_month(at("2024-06-15T00:00:00Z"), 30), 202112);
    }
}
