//! Signs that ClickHouse is under pressure (parts, merges, disk, a lagging replica), for migrations' throttle
//! checks: a run pauses between units of work while one of them holds, and goes on by itself when it clears.

use crate::clickhouse::ClickHouse;
use crate::cluster::Cluster;
use crate::definition::CheckOutcome;
use crate::Result;

/// Active parts in one partition from which a run pauses (ClickHouse delays inserts from 150 by default
/// and refuses them from 300).
pub const MAX_PARTS_PER_PARTITION: u64 = 150;
/// Merges running on the migration's tables from which a run pauses.
pub const MAX_MERGES: u64 = 8;
/// Checks the given tables of the engine's database: too many active parts in a partition, a merge
/// backlog, or a disk with less than `min_free_disk_percent` free (the runtime setting of that name; servers
/// with `system.disks`, 19.15 and later; 0 skips the check).
pub async fn clickhouse_pressure(clickhouse: &ClickHouse, tables: &[&str], min_free_disk_percent: u64) -> Result<CheckOutcome> {
    let client = clickhouse.client();
    let (table, partition, parts) = busiest_partition(clickhouse, tables).await?;
    if parts >= MAX_PARTS_PER_PARTITION {
        return Ok(CheckOutcome::Fail(format!(
            "partition {partition} of {table} has {parts} active parts (pausing from {MAX_PARTS_PER_PARTITION}) until merges catch up"
        )));
    }
    let merges: u64 = client
        .query("SELECT count() FROM system.merges WHERE database = ? AND has(?, table)")
        .bind(clickhouse.database())
        .bind(tables)
        .fetch_one()
        .await?;
    if merges >= MAX_MERGES {
        return Ok(CheckOutcome::Fail(format!("{merges} merges are running on {} (pausing from {MAX_MERGES})", tables.join(", "))));
    }
    if min_free_disk_percent > 0 && clickhouse.capabilities().reports_disks() {
        let (disk, free_percent): (String, f64) = client
            .query(
                "SELECT name, free_space / greatest(total_space, 1) * 100 AS free_percent FROM system.disks ORDER BY free_percent LIMIT 1",
            )
            .fetch_one()
            .await?;
        if free_percent < min_free_disk_percent as f64 {
            return Ok(CheckOutcome::Fail(format!(
                "only {free_percent:.1}% of ClickHouse disk {disk} is free (pausing under {min_free_disk_percent}%, the setting min_free_disk_percent)"
            )));
        }
    }
    Ok(CheckOutcome::Pass)
}

/// Whether a replica of the cluster lags behind its shard by more than `bound_seconds` (the runtime setting
/// `max_replica_lag_seconds`; 0 skips the check): copies made now would reach it later still, and reads
/// through the `Distributed` table that land on it would miss more.
pub async fn replica_lag(cluster: &Cluster, bound_seconds: u64) -> CheckOutcome {
    if bound_seconds == 0 {
        return CheckOutcome::Pass;
    }
    match cluster.replica_lagging_over(bound_seconds).await {
        Some((shard, replica)) => CheckOutcome::Fail(format!(
            "replica {} of shard {shard} is {} s behind, with {} replication tasks queued (pausing over {bound_seconds} s, \
             the setting max_replica_lag_seconds) until it catches up",
            replica.node, replica.lag_seconds, replica.queue_size
        )),
        None => CheckOutcome::Pass,
    }
}

/// The partition of `tables` (in the engine's database) with the most active parts: its table, partition id
/// and part count; empty names and 0 when the tables have no parts.
pub async fn busiest_partition(clickhouse: &ClickHouse, tables: &[&str]) -> Result<(String, String, u64)> {
    Ok(clickhouse
        .client()
        .query(
            "SELECT table, partition_id, count() AS parts FROM system.parts
             WHERE database = ? AND has(?, table) AND active
             GROUP BY table, partition_id ORDER BY parts DESC LIMIT 1",
        )
        .bind(clickhouse.database())
        .bind(tables)
        .fetch_optional()
        .await?
        .unwrap_or_default())
}
