//! What any product's tables look like to a migration: whether one exists, its engine on a cluster, its rows
//! and checksums per partition and how to select one partition's rows, read from the server's system tables.

use std::collections::BTreeMap;

use crate::clickhouse::{quote_identifier, ClickHouse};
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

/// One partition of a table: its row count and an order-independent hash of its rows.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct PartitionChecksum {
    pub partition_id: String,
    pub rows: u64,
    pub checksum: u64,
}

/// Row count and content checksum of each partition of `table`, in partition order: the sum (modulo 2^64) of
/// `row_hash`, an expression hashing one row's columns to a `UInt64`. Two tables with equal checksums hold the
/// same rows, whatever their sort key or part layout. Reads every row of the columns `row_hash` names.
pub async fn partition_checksums(clickhouse: &ClickHouse, table: &str, row_hash: &str) -> Result<Vec<PartitionChecksum>> {
    let query = format!(
        "SELECT _partition_id AS partition_id, count() AS rows, sum({row_hash}) AS checksum
         FROM {} GROUP BY partition_id ORDER BY partition_id",
        clickhouse.qualified(table)
    );
    // Raw: a `?` in `row_hash` (a string literal) is no placeholder.
    Ok(clickhouse.client().query_raw(&query).fetch_all().await?)
}

/// How many rows of `from` that `filter` selects (one partition, see [`partition_filter`]) have a
/// `row_identity` that the same rows of `into` lack. `(a, b)` is compared as `(a, b) NOT IN (SELECT a, b …)`:
/// 18.16 refuses a tuple on both sides.
pub async fn identities_missing(clickhouse: &ClickHouse, from: &str, into: &str, row_identity: &str, filter: &str) -> Result<u64> {
    let identity = strip_enclosing_parentheses(row_identity);
    let query = format!(
        "SELECT count() FROM {} WHERE {filter} AND ({identity}) NOT IN (SELECT {identity} FROM {} WHERE {filter})",
        clickhouse.qualified(from),
        clickhouse.qualified(into)
    );
    // Raw: the filter holds partition values, in which a `?` is no placeholder.
    Ok(clickhouse.client().query_raw(&query).fetch_one().await?)
}

/// A hash of one row of `table` over every column a `SELECT *` returns, for [`partition_checksums`] and the
/// like: each column as text (18.16 cannot hash a `UUID` or a `Date` as it is), in name order, so that two
/// tables of the same columns hash the same row alike.
pub async fn row_hash(clickhouse: &ClickHouse, table: &str) -> Result<String> {
    let columns: Vec<String> = clickhouse
        .client()
        .query(
            "SELECT name FROM system.columns WHERE database = ? AND table = ? AND default_kind NOT IN ('ALIAS', 'MATERIALIZED')
             ORDER BY name",
        )
        .bind(clickhouse.database())
        .bind(table)
        .fetch_all()
        .await?;
    let texts: Vec<String> = columns.iter().map(|column| format!("toString({})", quote_identifier(column))).collect();
    Ok(format!("cityHash64({})", texts.join(", ")))
}

/// The condition that selects the rows of partition `partition_id` of `table` and lets the server read that
/// partition only.
///
/// `_partition_id = 'id'` selects them on every server, but only servers that prune by it
/// ([`Capabilities::prunes_by_partition_id`](crate::capabilities::Capabilities::prunes_by_partition_id)) read
/// that partition alone. Elsewhere each element of the partition key is also compared with its value in this
/// partition (as `system.parts.partition` prints it: `toYYYYMM(ts) = 202401 AND team_id = 2`), which they
/// prune by. A key or value that cannot be taken apart that way (a tuple-typed key, an unpartitioned table)
/// leaves `_partition_id` alone: the statement is then slower, never wrong.
pub async fn partition_filter(clickhouse: &ClickHouse, table: &str, partition_id: &str) -> Result<String> {
    Ok(PartitionFilters::read(clickhouse, table, Some(partition_id)).await?.filter(partition_id))
}

/// [`partition_filter`] of every partition of a table, read in two queries: what a copy asks for once per unit
/// of work.
#[derive(Debug, Clone, Default)]
pub struct PartitionFilters {
    /// The partition key, where the server needs its elements compared (it does not prune by `_partition_id`).
    key: Option<String>,
    /// Each partition's value (`system.parts.partition`), by partition id.
    values: BTreeMap<String, String>,
}

impl PartitionFilters {
    /// The filters of `table`'s partitions as they are now.
    pub async fn of(clickhouse: &ClickHouse, table: &str) -> Result<PartitionFilters> {
        PartitionFilters::read(clickhouse, table, None).await
    }

    /// The filters of `table`'s partitions, of partition `only` alone when given.
    async fn read(clickhouse: &ClickHouse, table: &str, only: Option<&str>) -> Result<PartitionFilters> {
        if clickhouse.capabilities().prunes_by_partition_id() {
            return Ok(PartitionFilters::default());
        }
        let key: Option<String> = clickhouse
            .client()
            .query("SELECT partition_key FROM system.tables WHERE database = ? AND name = ?")
            .bind(clickhouse.database())
            .bind(table)
            .fetch_optional()
            .await?;
        let values: Vec<(String, String)> = clickhouse
            .client()
            .query("SELECT partition_id, any(partition) FROM system.parts WHERE database = ? AND table = ? AND (? = '' OR partition_id = ?) GROUP BY partition_id")
            .bind(clickhouse.database())
            .bind(table)
            .bind(only.unwrap_or_default())
            .bind(only.unwrap_or_default())
            .fetch_all()
            .await?;
        Ok(PartitionFilters { key, values: values.into_iter().collect() })
    }

    /// The condition of partition `partition_id`: `_partition_id` alone where the server prunes by it, or for a
    /// partition that was not there when these were read (the statement is then slower, never wrong).
    pub fn filter(&self, partition_id: &str) -> String {
        let by_id = format!("_partition_id = {}", quote_string(partition_id));
        let (Some(key), Some(value)) = (&self.key, self.values.get(partition_id)) else { return by_id };
        match partition_key_conditions(key, value) {
            Some(conditions) => format!("{by_id} AND {conditions}"),
            None => by_id,
        }
    }
}

/// `element = value AND …` for each element of partition key `key` and its value in `value` (both as the
/// server prints them), or `None` when they do not pair up.
fn partition_key_conditions(key: &str, value: &str) -> Option<String> {
    let elements = split_top_level(strip_enclosing_parentheses(key));
    let values = split_top_level(strip_enclosing_parentheses(value));
    if elements.is_empty() || elements.len() != values.len() || key.replace(' ', "") == "tuple()" {
        return None;
    }
    let conditions: Vec<String> = elements
        .iter()
        .zip(&values)
        .map(|(element, value)| match *value {
            "NULL" => format!("isNull({element})"),
            value => format!("({element}) = {}", partition_value_literal(value)),
        })
        .collect();
    Some(conditions.join(" AND "))
}

/// One element of a partition's value as a literal: numbers and quoted strings as printed; anything else (18.16
/// prints a `Date` key's value bare, `2024-01-02`, which would read as a subtraction) quoted as a string, which
/// ClickHouse compares with a date or time by converting it.
fn partition_value_literal(value: &str) -> String {
    let number = !value.is_empty() && value.trim_start_matches('-').chars().all(|character| character.is_ascii_digit() || character == '.');
    if number || value.starts_with('\'') {
        value.to_string()
    } else {
        quote_string(value)
    }
}

/// `text` without the parentheses around all of it, if it has them: `(a, b)` gives `a, b`; `(a) + (b)` stays.
pub(crate) fn strip_enclosing_parentheses(text: &str) -> &str {
    let text = text.trim();
    if !text.starts_with('(') {
        return text;
    }
    match top_level_positions(text).find(|&(_, depth)| depth == 0) {
        Some((close, _)) if close == text.len() - 1 => text[1..close].trim(),
        _ => text,
    }
}

/// The comma-separated items of `text` outside parentheses, brackets and quotes, trimmed; none for blank text.
pub(crate) fn split_top_level(text: &str) -> Vec<&str> {
    if text.trim().is_empty() {
        return Vec::new();
    }
    let mut items = Vec::new();
    let mut start = 0;
    for (index, depth) in top_level_positions(text) {
        if depth == 0 && text.as_bytes()[index] == b',' {
            items.push(text[start..index].trim());
            start = index + 1;
        }
    }
    items.push(text[start..].trim());
    items
}

/// Every byte offset of `text` outside quoted strings and identifiers, with the bracket depth after the
/// character there (`(`, `[` and `{` open, their pairs close): how SQL the server prints is taken apart.
pub(crate) fn top_level_positions(text: &str) -> impl Iterator<Item = (usize, i32)> + '_ {
    let mut depth = 0;
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    text.bytes().enumerate().filter_map(move |(index, byte)| {
        if let Some(open) = quote {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                _ if byte == open => quote = None,
                _ => {}
            }
            return None;
        }
        match byte {
            b'\'' | b'"' | b'`' => {
                quote = Some(byte);
                return None;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        Some((index, depth))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_pair_with_their_values() {
        assert_eq!(partition_key_conditions("toYYYYMM(timestamp)", "202401").as_deref(), Some("(toYYYYMM(timestamp)) = 202401"));
        assert_eq!(
            partition_key_conditions("(team_id, toYYYYMM(ts))", "(0,202401)").as_deref(),
            Some("(team_id) = 0 AND (toYYYYMM(ts)) = 202401")
        );
        assert_eq!(
            partition_key_conditions("(s, d)", r"('it\'s, 0','2024-01-01')").as_deref(),
            Some(r"(s) = 'it\'s, 0' AND (d) = '2024-01-01'")
        );
        assert_eq!(partition_key_conditions("n", "NULL").as_deref(), Some("isNull(n)"));
        // 18.16 prints a Date key's value bare.
        assert_eq!(partition_key_conditions("day", "2024-01-02").as_deref(), Some("(day) = '2024-01-02'"));
        assert_eq!(partition_key_conditions("(n % 2)", "-1").as_deref(), Some("(n % 2) = -1"));
        assert_eq!(partition_key_conditions("tuple()", "tuple()"), None);
        assert_eq!(partition_key_conditions("", "tuple()"), None);
        assert_eq!(partition_key_conditions("pair", "(1,2)"), None, "a tuple-typed key stays whole");
    }

    #[test]
    fn printed_sql_is_taken_apart_outside_brackets_and_quotes() {
        assert_eq!(split_top_level("a, f(b, c), '(,', `x,y`"), ["a", "f(b, c)", "'(,'", "`x,y`"]);
        assert_eq!(split_top_level("  "), Vec::<&str>::new());
        assert_eq!(strip_enclosing_parentheses(" (a, (b)) "), "a, (b)");
        assert_eq!(strip_enclosing_parentheses("(a) + (b)"), "(a) + (b)");
        assert_eq!(strip_enclosing_parentheses("f(a)"), "f(a)");
    }
}
