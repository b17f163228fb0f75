//! What any product's tables look like to a migration: whether one exists, its engine on a cluster, and its
//! rows per partition, read from the server's system tables.

use crate::clickhouse::ClickHouse;
use crate::parameters::quote_string;
use crate::Result;

/// The engine of a MergeTree-family table `table` (`family` is e.g. `MergeTree` or `ReplacingMergeTree`): on a
/// cluster, its `Replicated` form, one copy per replica of each shard (`per_shard`) or one copy on every node.
pub fn table_engine(clickhouse: &ClickHouse, family: &str, table: &str, per_shard: bool) -> String {
    if clickhouse.cluster().is_none() {
        return family.to_string();
    }
    let replica = if per_shard { "{replica}" } else { "{shard}-{replica}" };
    let path = clickhouse.capabilities().replicated_table_path(clickhouse.database(), table, per_shard);
    format!("Replicated{family}({}, {})", quote_string(&path), quote_string(replica))
}

/// True when the engine's database has a table named `table`.
pub async fn table_exists(clickhouse: &ClickHouse, table: &str) -> Result<bool> {
    let tables: u64 = clickhouse
        .client()
        .query("SELECT count() FROM system.tables WHERE database = ? AND name = ?")
        .bind(clickhouse.database())
        .bind(table)
        .fetch_one()
        .await?;
    Ok(tables > 0)
}

/// Rows per partition id of `table`, from its active parts (cheap: no data is read), in partition order.
/// Partitions without rows are left out: current servers keep empty active parts listed for a while after a
/// partition is moved or dropped.
pub async fn partition_row_counts(clickhouse: &ClickHouse, table: &str) -> Result<Vec<(String, u64)>> {
    Ok(clickhouse
        .client()
        .query(
            "SELECT partition_id, sum(rows) FROM system.parts
             WHERE database = ? AND table = ? AND active AND rows > 0
             GROUP BY partition_id ORDER BY partition_id",
        )
        .bind(clickhouse.database())
        .bind(table)
        .fetch_all()
        .await?)
}

/// How many rows `table` holds.
pub async fn row_count(clickhouse: &ClickHouse, table: &str) -> Result<u64> {
    let query = format!("SELECT count() FROM {}", clickhouse.qualified(table));
    Ok(clickhouse.client().query(&query).fetch_one().await?)
}
