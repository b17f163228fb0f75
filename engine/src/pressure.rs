//! Signs that ClickHouse is under pressure, for migrations' throttle checks: a run pauses between units of
//! work while one of them holds, and goes on by itself when it clears.

use crate::clickhouse::ClickHouse;
use crate::definition::CheckOutcome;
use crate::Result;

/// Active parts in one partition from which a run pauses (ClickHouse delays inserts from 150 by default
/// and refuses them from 300).
pub const MAX_PARTS_PER_PARTITION: u64 = 150;
/// Merges running on the migration's tables from which a run pauses.
pub const MAX_MERGES: u64 = 8;
/// Share of free disk under which a run pauses (servers with `system.disks`, 19.15 and later).
pub const MIN_FREE_DISK_PERCENT: f64 = 10.0;

/// Checks the given tables of the engine's database: too many active parts in a partition, a merge
/// backlog, or too little free disk.
pub async fn clickhouse_pressure(clickhouse: &ClickHouse, tables: &[&str]) -> Result<CheckOutcome> {
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
    if clickhouse.capabilities().reports_disks() {
        let free_percent: f64 =
            client.query("SELECT min(free_space / greatest(total_space, 1)) * 100 FROM system.disks").fetch_one().await?;
        if free_percent < MIN_FREE_DISK_PERCENT {
            return Ok(CheckOutcome::Fail(format!("only {free_percent:.1}% of the disk is free (pausing under {MIN_FREE_DISK_PERCENT}%)")));
        }
    }
    Ok(CheckOutcome::Pass)
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
