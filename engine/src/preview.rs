//! What an operation would do, read from the servers without changing them: the statements a recipe would send
//! as the tables are now, and the tables, partitions, rows and bytes it would touch. A [`crate::plan::Plan`] is
//! made of these.

use serde::Serialize;

use crate::clickhouse::ClickHouse;
use crate::Result;

/// What a recipe's operation would send and touch, as the servers are now.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OperationPreview {
    /// The statements it would send, in order, exactly as they would be sent.
    pub statements: Vec<String>,
    /// The statements its rollback would send.
    pub rollback: Vec<String>,
    /// What depends on the run itself (inserts meanwhile, shards), in a sentence; empty when nothing does.
    pub note: String,
    pub tables: Vec<TableFootprint>,
    /// Bytes it writes beside what the tables hold now (a copy, rewritten parts kept until merged away).
    pub disk_needed: u64,
    /// Bytes on disk it copies with `INSERT … SELECT`.
    pub copied_bytes: u64,
    pub duration: DurationKind,
}

/// What an operation's duration depends on, for a plan's estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DurationKind {
    /// Moments: names, definitions, reads of system tables.
    Brief,
    /// The copy of its `copied_bytes`, at the speed this instance's copies reach.
    Copy,
    /// A time no measure of this instance predicts (a mutation, Postgres batches, a product's Rust).
    #[default]
    Unknown,
}

impl DurationKind {
    /// How long a plain statement takes: brief for definitions and names (an `ALTER` that adds, drops or renames
    /// a column included), unknown for what touches data (updates, deletes, inserts, a column's type changed).
    pub fn of_statement(sql: &str) -> DurationKind {
        let words: Vec<String> = sql.split_whitespace().map(str::to_ascii_uppercase).collect();
        let has = |pair: [&str; 2]| words.windows(2).any(|window| window[0] == pair[0] && window[1] == pair[1]);
        match words.first().map(String::as_str) {
            Some("CREATE" | "DROP" | "RENAME" | "EXCHANGE" | "COMMENT" | "GRANT" | "REVOKE") => DurationKind::Brief,
            Some("ALTER")
                if [["ADD", "COLUMN"], ["DROP", "COLUMN"], ["RENAME", "COLUMN"], ["COMMENT", "COLUMN"]].into_iter().any(has)
                    && !words.iter().any(|word| word == "UPDATE" || word == "DELETE" || word == "MODIFY") =>
            {
                DurationKind::Brief
            }
            _ => DurationKind::Unknown,
        }
    }
}

/// Which server holds a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Server {
    Clickhouse,
    Postgres,
}

/// A table an operation reads or writes, and how much of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableFootprint {
    pub server: Server,
    pub table: String,
    /// The partitions it touches (0 for a Postgres table).
    pub partitions: u64,
    pub rows: u64,
    /// Bytes on disk of what it touches.
    pub bytes: u64,
}

/// One partition of a ClickHouse table, from its active parts.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct PartitionSize {
    pub partition_id: String,
    pub rows: u64,
    pub bytes_on_disk: u64,
}

/// Rows and bytes on disk per partition of `table` (partitions with rows only), in partition order.
pub async fn partition_sizes(clickhouse: &ClickHouse, table: &str) -> Result<Vec<PartitionSize>> {
    Ok(clickhouse
        .client()
        .query(
            // Current servers match columns by name, and an alias named like a column of system.parts would
            // replace it in the WHERE: the parts' columns are renamed in a subquery.
            "SELECT partition_id, sum(part_rows) AS rows, sum(part_bytes) AS bytes_on_disk
             FROM (SELECT partition_id, rows AS part_rows, bytes_on_disk AS part_bytes FROM system.parts
                   WHERE database = ? AND table = ? AND active AND rows > 0)
             GROUP BY partition_id ORDER BY partition_id",
        )
        .bind(clickhouse.database())
        .bind(table)
        .fetch_all()
        .await?)
}

/// The footprint of the given partitions of ClickHouse table `table`.
pub fn clickhouse_footprint(table: &str, partitions: &[PartitionSize]) -> TableFootprint {
    TableFootprint {
        server: Server::Clickhouse,
        table: table.into(),
        partitions: partitions.len() as u64,
        rows: partitions.iter().map(|partition| partition.rows).sum(),
        bytes: partitions.iter().map(|partition| partition.bytes_on_disk).sum(),
    }
}

/// The least free space of the server's disks, where it reports them (`system.disks`, 19.15).
pub async fn least_free_disk_space(clickhouse: &ClickHouse) -> Result<Option<u64>> {
    if !clickhouse.capabilities().reports_disks() {
        return Ok(None);
    }
    Ok(Some(clickhouse.client().query("SELECT min(free_space) FROM system.disks").fetch_one().await?))
}

#[cfg(test)]
mod tests {
    use super::DurationKind;

    #[test]
    fn definitions_are_brief_and_what_touches_rows_is_unknown() {
        for brief in ["CREATE TABLE t (x UInt8) ENGINE = Memory", "drop table t", "ALTER TABLE t ADD COLUMN c String DEFAULT 'x'"] {
            assert_eq!(DurationKind::of_statement(brief), DurationKind::Brief, "{brief}");
        }
        for unknown in [
            "ALTER TABLE t UPDATE c = 1 WHERE 1",
            "INSERT INTO t SELECT * FROM u",
            "ALTER TABLE t MODIFY COLUMN c UInt64",
            "UPDATE shop SET x = 1",
        ] {
            assert_eq!(DurationKind::of_statement(unknown), DurationKind::Unknown, "{unknown}");
        }
    }
}
