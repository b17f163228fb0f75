//! Copying a table's partitions into another of the same partition key, several at once (the `parallelism`
//! parameter): a partition of at most `slice_rows` rows is one `INSERT … SELECT` after its copy's `DROP PARTITION`;
//! a larger one is cut into slices by ranges of the source's first sort-key element (bounds from `quantiles`,
//! saved in the checkpoint before any slice runs), each slice inserted into a staging table of its stream and
//! attached from there (`ATTACH PARTITION … FROM`), so that the target never holds half a slice. The checkpoint
//! lists the partitions done, each sliced partition's slices done, and the slices in flight: a resume asks the
//! target whether an in-flight slice was attached, and redoes at most one slice per stream. A catch-up copies its
//! partitions whole, several at once.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::clickhouse::{quote_identifier, ClickHouse, QueryOptions};
use crate::context::MigrationContext;
use crate::parameters::{quote_string, ParameterSpec, ParameterValue};
use crate::preview::{partition_sizes, PartitionSize};
use crate::tables::{partition_filter, split_top_level, strip_enclosing_parentheses, PartitionFilters};
use crate::Result;

/// The parameter that says how many partitions (or slices) are copied at once (0: one per core of the server).
pub const PARALLELISM: &str = "parallelism";
/// The parameter that bounds a slice of a large partition, in rows.
pub const SLICE_ROWS: &str = "slice_rows";
/// The parameter that caps the threads of each copy statement (0: the server's default).
pub const MAX_THREADS: &str = "max_threads";
/// Rows per slice where the migration does not declare [`SLICE_ROWS`]: about ten seconds of one stream's copy.
const DEFAULT_SLICE_ROWS: i64 = 10_000_000;
/// Streams when the server does not say how many cores it has.
const FALLBACK_STREAMS: usize = 2;
/// At most this many streams when the parallelism is left to the server's cores.
const MAX_AUTOMATIC_STREAMS: usize = 16;

/// The parameters a partition copy reads: [`PARALLELISM`] and [`MAX_THREADS`] (both adjustable while it runs) and
/// [`SLICE_ROWS`].
pub fn parameters() -> Vec<ParameterSpec> {
    vec![
        ParameterSpec::integer(
            PARALLELISM,
            "Partitions (or slices of a large one) copied at once, each by its own statement; 0 runs one per core of the server",
            0,
            0,
            64,
        )
        .adjustable(),
        ParameterSpec::integer(
            SLICE_ROWS,
            "A partition with more rows is copied in slices of about this many rows, each checkpointed: the most a resume copies again per stream",
            DEFAULT_SLICE_ROWS,
            100,
            1_000_000_000_000,
        ),
        ParameterSpec::integer(MAX_THREADS, "Threads ClickHouse may use for each copy statement; 0 leaves the server's default", 0, 0, 256)
            .adjustable(),
    ]
}

/// How far a copy got, as its operation's checkpoint: `{"copied": [partition ids], "slices": {id: …}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CopyCheckpoint {
    /// Partitions whole in the target.
    #[serde(default)]
    pub copied: BTreeSet<String>,
    /// Partitions being copied in slices.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub slices: BTreeMap<String, SlicedPartition>,
}

/// A partition copied in slices: `key < bounds[0]`, `bounds[0] <= key < bounds[1]`, …, `key >= bounds[n-1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlicedPartition {
    /// The source's first sort-key element, which the slices are ranges of.
    pub key: String,
    /// The bounds, as SQL literals of the key's type, ascending.
    pub bounds: Vec<String>,
    /// Slices attached to the target.
    #[serde(default)]
    pub done: BTreeSet<usize>,
    /// Slices that may have been attached when the copy stopped: a resume asks the target.
    #[serde(default)]
    pub in_flight: BTreeSet<usize>,
}

impl CopyCheckpoint {
    /// The checkpoint as saved.
    fn value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("sets and maps keyed by strings always serialize")
    }
}

impl SlicedPartition {
    fn slice_count(&self) -> usize {
        self.bounds.len() + 1
    }

    /// The condition that picks slice `index`'s rows.
    pub fn condition(&self, index: usize) -> String {
        let key = &self.key;
        let lower = index.checked_sub(1).and_then(|below| self.bounds.get(below));
        match (lower, self.bounds.get(index)) {
            (None, Some(upper)) => format!("({key}) < {upper}"),
            (Some(lower), Some(upper)) => format!("({key}) >= {lower} AND ({key}) < {upper}"),
            (Some(lower), None) => format!("({key}) >= {lower}"),
            (None, None) => "1".to_string(),
        }
    }
}

/// What one stream copies at a time.
#[derive(Debug, Clone)]
enum CopyUnit {
    /// A whole partition, by one statement.
    Partition(String),
    /// One slice of a partition copied in slices.
    Slice { partition_id: String, index: usize },
}

/// A copy of `source`'s partitions into `target` (in the product's database, on the context's server).
pub struct PartitionCopy {
    pub source: String,
    pub target: String,
    /// The storage of the staging tables (`ENGINE = …` and its clauses): the target's, without replication, so
    /// that their parts can be attached to it.
    pub staging_storage: String,
    /// The columns each `INSERT … SELECT` names.
    pub columns: CopiedColumns,
}

impl PartitionCopy {
    /// The copy's staging table for stream `stream`.
    fn staging_table(&self, stream: usize) -> String {
        format!("{}_stage{stream}", self.target)
    }

    /// Copies every partition of the source the checkpoint does not list as copied, checkpointing each partition
    /// and slice as it finishes; then drops the staging tables.
    pub async fn copy_all(&self, context: &MigrationContext, sizes: &[PartitionSize]) -> Result<()> {
        let mut checkpoint: CopyCheckpoint =
            context.checkpoint().and_then(|checkpoint| serde_json::from_value(checkpoint).ok()).unwrap_or_default();
        context.track_partitions(sizes, &checkpoint.copied).await?;
        self.settle_slices_in_flight(context, &mut checkpoint).await?;
        let slice_rows = slice_rows(context);
        for size in sizes.iter().filter(|size| !checkpoint.copied.contains(&size.partition_id)) {
            if size.rows > slice_rows && !checkpoint.slices.contains_key(&size.partition_id) {
                if let Some(sliced) = self.slice(context, &size.partition_id, size.rows, slice_rows).await? {
                    checkpoint.slices.insert(size.partition_id.clone(), sliced);
                }
            }
        }
        context.save_checkpoint(checkpoint.value()).await?;
        let (units, already_done) = units_left(sizes, &checkpoint);
        context.record_rows_copied(already_done).await?;
        let ledger = Mutex::new(Ledger {
            checkpoint,
            sizes: sizes.iter().map(|size| (size.partition_id.clone(), size.clone())).collect(),
            began: BTreeMap::new(),
        });
        self.run_units(context, units, already_done, &ledger, true).await?;
        self.drop_staging_tables(context).await
    }

    /// Copies `partitions` again, each whole (its copy dropped first), several at once, with no checkpoint: a
    /// catch-up that stops starts over, and a partition receiving inserts is not cut into slices that would each
    /// add parts to it.
    pub async fn copy_again(&self, context: &MigrationContext, partitions: &[PartitionSize]) -> Result<()> {
        let units = partitions.iter().map(|size| (CopyUnit::Partition(size.partition_id.clone()), size.rows)).collect();
        let ledger = Mutex::new(Ledger { checkpoint: CopyCheckpoint::default(), sizes: BTreeMap::new(), began: BTreeMap::new() });
        self.run_units(context, units, 0, &ledger, false).await
    }

    async fn run_units(
        &self,
        context: &MigrationContext,
        units: Vec<(CopyUnit, u64)>,
        already_done: u64,
        ledger: &Mutex<Ledger>,
        checkpointed: bool,
    ) -> Result<()> {
        let automatic = server_cores(&context.clickhouse).await.min(MAX_AUTOMATIC_STREAMS);
        let known = &KnownPartitions::read(&context.clickhouse, self).await?;
        let streams = move |context: &MigrationContext| match context.value_now(PARALLELISM) {
            Some(ParameterValue::Integer(streams)) if streams > 0 => streams as usize,
            _ => automatic,
        };
        context
            .in_parallel(units, already_done, streams, |context, stream, unit| async move {
                match unit {
                    CopyUnit::Partition(partition_id) => self.copy_partition(&context, &partition_id, known, ledger, checkpointed).await,
                    CopyUnit::Slice { partition_id, index } => self.copy_slice(&context, stream, &partition_id, index, known, ledger).await,
                }
            })
            .await
    }

    /// A whole partition: its copy dropped (when it has rows), then the source's inserted; recorded in the
    /// checkpoint when `checkpointed`.
    async fn copy_partition(
        &self,
        context: &MigrationContext,
        partition_id: &str,
        known: &KnownPartitions,
        ledger: &Mutex<Ledger>,
        checkpointed: bool,
    ) -> Result<()> {
        let started = std::time::Instant::now();
        let clickhouse = &context.clickhouse;
        let insert = self.insert_sql(clickhouse, &self.target, &known.source_filters.filter(partition_id), None);
        // Dropped only when something of it is there (a stopped copy's, or a catch-up's): on servers before
        // MVCC parts (18.16 measured) a `DROP PARTITION` waits for every insert into the table, so another
        // stream's copy would hold this one.
        if known.filled_in_target.contains(partition_id) {
            let drop = Self::drop_partition_sql(clickhouse, &self.target, partition_id);
            context.clickhouse_execute_part(&drop, &QueryOptions::default(), 0.0..0.0).await?;
        }
        context.clickhouse_execute_part(&insert, &self.columns.options(context), 0.0..1.0).await?;
        if !checkpointed {
            return Ok(());
        }
        let mut ledger = ledger.lock().await;
        ledger.checkpoint.copied.insert(partition_id.to_string());
        ledger.record(context, partition_id, started.elapsed(), 1.0).await
    }

    /// Slice `index` of a partition, through stream `stream`'s staging table: emptied of the partition, filled
    /// with the slice, its parts attached to the target, emptied again. The slice is recorded in flight before
    /// anything is sent, and done once attached.
    async fn copy_slice(
        &self,
        context: &MigrationContext,
        stream: usize,
        partition_id: &str,
        index: usize,
        known: &KnownPartitions,
        ledger: &Mutex<Ledger>,
    ) -> Result<()> {
        let started = std::time::Instant::now();
        let sliced = {
            let mut ledger = ledger.lock().await;
            ledger.began.entry(partition_id.to_string()).or_insert(started);
            let sliced = ledger.checkpoint.slices.get_mut(partition_id).expect("a sliced partition");
            sliced.in_flight.insert(index);
            let sliced = sliced.clone();
            context.save_checkpoint(ledger.checkpoint.value()).await?;
            sliced
        };
        let staging = self.staging_table(stream);
        let clickhouse = &context.clickhouse;
        let create = self.create_staging_sql(clickhouse, &staging);
        let insert = self.insert_sql(clickhouse, &staging, &known.source_filters.filter(partition_id), Some(&sliced.condition(index)));
        let attach = self.attach_sql(clickhouse, &staging, partition_id);
        let empty_staging = Self::drop_partition_sql(clickhouse, &staging, partition_id);
        context.clickhouse_execute_part(&create, &QueryOptions::default(), 0.0..0.0).await?;
        context.clickhouse_execute_part(&empty_staging, &QueryOptions::default(), 0.0..0.0).await?;
        context.clickhouse_execute_part(&insert, &self.columns.options(context), 0.0..1.0).await?;
        context.clickhouse_execute_part(&attach, &QueryOptions::default(), 1.0..1.0).await?;
        context.clickhouse_execute_part(&empty_staging, &QueryOptions::default(), 1.0..1.0).await?;
        let mut ledger = ledger.lock().await;
        let sliced = ledger.checkpoint.slices.get_mut(partition_id).expect("a sliced partition");
        sliced.in_flight.remove(&index);
        sliced.done.insert(index);
        let share = 1.0 / sliced.slice_count() as f64;
        if sliced.done.len() == sliced.slice_count() {
            ledger.checkpoint.slices.remove(partition_id);
            ledger.checkpoint.copied.insert(partition_id.to_string());
        }
        ledger.record(context, partition_id, started.elapsed(), share).await
    }

    /// The slices of partition `partition_id` (`rows` rows) for at most `slice_rows` rows each, or `None` where
    /// the source's first sort-key element has no type whose ranges can be told (integers, dates and times) or
    /// takes too few values to cut the partition.
    async fn slice(&self, context: &MigrationContext, partition_id: &str, rows: u64, slice_rows: u64) -> Result<Option<SlicedPartition>> {
        let clickhouse = &context.clickhouse;
        let sorting_key: String = clickhouse
            .client()
            .query("SELECT sorting_key FROM system.tables WHERE database = ? AND name = ?")
            .bind(clickhouse.database())
            .bind(&self.source)
            .fetch_one()
            .await?;
        let Some(key) = split_top_level(strip_enclosing_parentheses(&sorting_key)).first().map(|key| key.trim().to_string()) else {
            return Ok(None);
        };
        let slices = rows.div_ceil(slice_rows.max(1));
        let levels: Vec<String> = (1..slices).map(|level| format!("{:.6}", level as f64 / slices as f64)).collect();
        let filter = partition_filter(clickhouse, &self.source, partition_id).await?;
        let key_type: String = clickhouse
            .client()
            .query(&format!("SELECT toTypeName({key}) FROM {} WHERE {filter} LIMIT 1", clickhouse.qualified(&self.source)))
            .fetch_optional()
            .await?
            .unwrap_or_default();
        if !is_sliceable(&key_type) {
            tracing::info!(partition_id, %key, %key_type, "copied whole: its first sort-key element has no ranges amigo cuts");
            return Ok(None);
        }
        let quantiles: Vec<String> = clickhouse
            .client()
            .query(&format!(
                "SELECT arrayMap(value -> toString(value), quantiles({})({key})) FROM {} WHERE {filter}",
                levels.join(", "),
                clickhouse.qualified(&self.source)
            ))
            .fetch_one()
            .await?;
        let mut bounds: Vec<String> = quantiles.iter().filter_map(|value| literal(value, &key_type)).collect();
        bounds.dedup();
        if bounds.is_empty() {
            return Ok(None);
        }
        Ok(Some(SlicedPartition { key, bounds, done: BTreeSet::new(), in_flight: BTreeSet::new() }))
    }

    /// A resume's first step: each slice the checkpoint says was in flight is done if the target has its rows
    /// (it was attached before the stop), or to copy again (nothing of it reached the target).
    async fn settle_slices_in_flight(&self, context: &MigrationContext, checkpoint: &mut CopyCheckpoint) -> Result<()> {
        let clickhouse = &context.clickhouse;
        for (partition_id, sliced) in checkpoint.slices.iter_mut() {
            let filter = partition_filter(clickhouse, &self.target, partition_id).await?;
            for index in std::mem::take(&mut sliced.in_flight) {
                let rows: u64 = clickhouse
                    .client()
                    .query(&format!(
                        "SELECT count() FROM {} WHERE {filter} AND {}",
                        clickhouse.qualified(&self.target),
                        sliced.condition(index)
                    ))
                    .fetch_one()
                    .await?;
                tracing::info!(partition_id, slice = index, rows, "a slice in flight when the copy stopped");
                if rows > 0 {
                    sliced.done.insert(index);
                }
            }
        }
        let whole: Vec<String> =
            checkpoint.slices.iter().filter(|(_, sliced)| sliced.done.len() == sliced.slice_count()).map(|(id, _)| id.clone()).collect();
        for partition_id in whole {
            checkpoint.slices.remove(&partition_id);
            checkpoint.copied.insert(partition_id);
        }
        Ok(())
    }

    /// What [`PartitionCopy::copy_all`] would send for these partitions, as the plan shows it: a partition's drop
    /// and insert, or for one copied in slices its first slice's statements, the bounds taken when the copy
    /// reaches it.
    pub async fn preview(&self, context: &MigrationContext, sizes: &[PartitionSize]) -> Result<Vec<String>> {
        let (clickhouse, slice_rows) = (&context.clickhouse, slice_rows(context));
        let filters = PartitionFilters::of(clickhouse, &self.source).await?;
        let mut statements = Vec::with_capacity(sizes.len() * 2);
        for size in sizes {
            let partition_id = &size.partition_id;
            let filter = filters.filter(partition_id);
            if size.rows <= slice_rows {
                statements.push(Self::drop_partition_sql(clickhouse, &self.target, partition_id));
                statements.push(self.insert_sql(clickhouse, &self.target, &filter, None));
                continue;
            }
            let slices = size.rows.div_ceil(slice_rows);
            let staging = self.staging_table(0);
            let condition = format!("<slice 1 of {slices}: a range of the first sort-key element, from its quantiles>");
            statements.push(self.create_staging_sql(clickhouse, &staging));
            statements.push(Self::drop_partition_sql(clickhouse, &staging, partition_id));
            statements.push(self.insert_sql(clickhouse, &staging, &filter, Some(&condition)));
            statements.push(self.attach_sql(clickhouse, &staging, partition_id));
        }
        Ok(statements)
    }

    fn create_staging_sql(&self, clickhouse: &ClickHouse, staging: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} AS {} ENGINE = {}",
            clickhouse.qualified(staging),
            clickhouse.qualified(&self.target),
            self.staging_storage
        )
    }

    fn attach_sql(&self, clickhouse: &ClickHouse, staging: &str, partition_id: &str) -> String {
        format!(
            "ALTER TABLE {} ATTACH PARTITION ID {} FROM {}",
            clickhouse.qualified(&self.target),
            quote_string(partition_id),
            clickhouse.qualified(staging)
        )
    }

    /// The `INSERT … SELECT` of the source's partition that `filter` selects ([`PartitionFilters::filter`]), and
    /// `condition` for a slice, into `into`.
    pub fn insert_sql(&self, clickhouse: &ClickHouse, into: &str, filter: &str, condition: Option<&str>) -> String {
        let condition = condition.map(|condition| format!(" AND {condition}")).unwrap_or_default();
        format!(
            "INSERT INTO {} ({list}) SELECT {list} FROM {} WHERE {filter}{condition}",
            clickhouse.qualified(into),
            clickhouse.qualified(&self.source),
            list = self.columns.list
        )
    }

    /// The statement of a partition's copy: the copy's partition dropped.
    pub fn drop_partition_sql(clickhouse: &ClickHouse, table: &str, partition_id: &str) -> String {
        format!("ALTER TABLE {} DROP PARTITION ID {}", clickhouse.qualified(table), quote_string(partition_id))
    }

    /// Drops the copy's staging tables on the context's server.
    pub async fn drop_staging_tables(&self, context: &MigrationContext) -> Result<()> {
        drop_staging_tables(context, &self.target).await
    }
}

/// Drops every staging table of a copy into `target` on the context's server (a copy that stopped leaves them).
pub async fn drop_staging_tables(context: &MigrationContext, target: &str) -> Result<()> {
    let clickhouse = &context.clickhouse;
    let staging: Vec<String> = clickhouse
        .client()
        .query("SELECT name FROM system.tables WHERE database = ? AND startsWith(name, ?)")
        .bind(clickhouse.database())
        .bind(format!("{target}_stage"))
        .fetch_all()
        .await?;
    for table in staging.iter().filter(|name| name[target.len() + "_stage".len()..].chars().all(|c| c.is_ascii_digit())) {
        let sql = format!("DROP TABLE IF EXISTS {}{}", clickhouse.qualified(table), clickhouse.capabilities().drop_table_suffix());
        context.clickhouse_execute_part(&sql, &QueryOptions::default(), 1.0..1.0).await?;
    }
    Ok(())
}

/// What a copy's units ask of the servers' partitions, read once as the units start: the source's partition
/// filters, and the target's partitions that already hold rows (from a stopped attempt, or for a catch-up). Only
/// the copy writes to the target, and each partition is one unit, so the latter stays true while they run.
struct KnownPartitions {
    source_filters: PartitionFilters,
    filled_in_target: BTreeSet<String>,
}

impl KnownPartitions {
    async fn read(clickhouse: &ClickHouse, copy: &PartitionCopy) -> Result<KnownPartitions> {
        Ok(KnownPartitions {
            source_filters: PartitionFilters::of(clickhouse, &copy.source).await?,
            filled_in_target: partition_sizes(clickhouse, &copy.target).await?.into_iter().map(|size| size.partition_id).collect(),
        })
    }
}

/// The checkpoint of a copy in progress, the source's partitions for its figures, and when this attempt began
/// each partition it copies in slices.
struct Ledger {
    checkpoint: CopyCheckpoint,
    sizes: BTreeMap<String, PartitionSize>,
    began: BTreeMap<String, std::time::Instant>,
}

impl Ledger {
    /// Records that `share` of partition `partition_id` was copied in `took`: the speed sample, once the partition
    /// is whole its mark on the page, the checkpoint and the rows copied so far, written at once (each on its own
    /// connection) under the ledger's lock, so that a later state is never overwritten by an earlier one. A resume
    /// marks again what the checkpoint says is copied.
    async fn record(&mut self, context: &MigrationContext, partition_id: &str, took: std::time::Duration, share: f64) -> Result<()> {
        let (_, copied) = units_left(&self.sizes.values().cloned().collect::<Vec<_>>(), &self.checkpoint);
        let size = self.sizes.get(partition_id);
        let sample = async {
            if let Some(size) = size {
                let rows = (size.rows as f64 * share) as u64;
                context.record_copy_sample(rows, (size.bytes_on_disk as f64 * share) as u64, took).await;
            }
            Ok(())
        };
        let mark = async {
            if size.is_some() && self.checkpoint.copied.contains(partition_id) {
                let whole = self.began.get(partition_id).map_or(took, std::time::Instant::elapsed);
                context.partition_done(partition_id, whole).await?;
            }
            Ok(())
        };
        tokio::try_join!(sample, mark, context.save_checkpoint(self.checkpoint.value()), context.record_rows_copied(copied))?;
        Ok(())
    }
}

/// The units left to copy of `sizes` by `checkpoint`, each with its rows, and the rows already copied.
fn units_left(sizes: &[PartitionSize], checkpoint: &CopyCheckpoint) -> (Vec<(CopyUnit, u64)>, u64) {
    let (mut units, mut copied) = (Vec::new(), 0);
    for size in sizes {
        if checkpoint.copied.contains(&size.partition_id) {
            copied += size.rows;
            continue;
        }
        match checkpoint.slices.get(&size.partition_id) {
            Some(sliced) => {
                let per_slice = size.rows / sliced.slice_count() as u64;
                for index in 0..sliced.slice_count() {
                    if sliced.done.contains(&index) {
                        copied += per_slice;
                    } else {
                        units.push((CopyUnit::Slice { partition_id: size.partition_id.clone(), index }, per_slice));
                    }
                }
            }
            None => units.push((CopyUnit::Partition(size.partition_id.clone()), size.rows)),
        }
    }
    (units, copied)
}

/// The rows of a slice, as the run's parameters say.
fn slice_rows(context: &MigrationContext) -> u64 {
    match context.value_now(SLICE_ROWS) {
        Some(ParameterValue::Integer(rows)) => rows.max(1) as u64,
        _ => DEFAULT_SLICE_ROWS as u64,
    }
}

/// How many cores the server says it has (its `max_threads` default, e.g. `auto(8)`), or a guess.
async fn server_cores(clickhouse: &ClickHouse) -> usize {
    let value: Option<String> =
        clickhouse.client().query("SELECT value FROM system.settings WHERE name = 'max_threads'").fetch_optional().await.ok().flatten();
    value
        .and_then(|value| value.chars().filter(char::is_ascii_digit).collect::<String>().parse().ok())
        .filter(|&cores| cores > 0)
        .unwrap_or(FALLBACK_STREAMS)
}

/// Whether a key of this type (as `toTypeName` prints it) can be cut into ranges that hold every row: integers,
/// dates and times (not nullable, nor floats: a `NULL` or a `NaN` is in no range).
fn is_sliceable(key_type: &str) -> bool {
    let integer =
        key_type.trim_start_matches('U').strip_prefix("Int").is_some_and(|bits| ["8", "16", "32", "64", "128", "256"].contains(&bits));
    integer || key_type == "Date" || key_type == "Date32" || key_type.starts_with("DateTime")
}

/// A bound as an SQL literal of the key's type, from a quantile as `toString` printed it (integers' quantiles are
/// floats: rounded down).
fn literal(value: &str, key_type: &str) -> Option<String> {
    if key_type.starts_with("Date") {
        return Some(format!("CAST({} AS {key_type})", quote_string(value)));
    }
    let number: f64 = value.parse().ok()?;
    number.is_finite().then(|| format!("{:.0}", number.floor()))
}

/// The columns an `INSERT … SELECT` between a table and its copy names: every column stored (not `ALIAS` or
/// `EPHEMERAL`), `MATERIALIZED` ones included, so that their values are copied rather than computed again.
#[derive(Debug, Clone)]
pub struct CopiedColumns {
    /// Quoted and comma-separated.
    pub list: String,
    /// Some are `MATERIALIZED`: an insert may name them only with `insert_allow_materialized_columns`.
    pub materialized: bool,
}

/// A column an `INSERT … SELECT` copies, as `system.columns` lists it.
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
struct StoredColumn {
    name: String,
    default_kind: String,
}

impl CopiedColumns {
    /// The columns of `table` a copy names.
    pub async fn of(clickhouse: &ClickHouse, table: &str) -> Result<CopiedColumns> {
        let columns: Vec<StoredColumn> = clickhouse
            .client()
            .query("SELECT name, default_kind FROM system.columns WHERE database = ? AND table = ?")
            .bind(clickhouse.database())
            .bind(table)
            .fetch_all()
            .await?;
        let stored: Vec<&StoredColumn> =
            columns.iter().filter(|column| !matches!(column.default_kind.as_str(), "ALIAS" | "EPHEMERAL")).collect();
        Ok(CopiedColumns {
            list: stored.iter().map(|column| quote_identifier(&column.name)).collect::<Vec<_>>().join(", "),
            materialized: stored.iter().any(|column| column.default_kind == "MATERIALIZED"),
        })
    }

    /// The settings of a copy: `max_threads` when the parameter sets it (as it is now), and what lets it write
    /// `MATERIALIZED` columns.
    pub fn options(&self, context: &MigrationContext) -> QueryOptions {
        let mut settings = Vec::new();
        if let Some(ParameterValue::Integer(max_threads)) =
            context.value_now(MAX_THREADS).filter(|value| value != &ParameterValue::Integer(0))
        {
            settings.push(("max_threads".to_string(), max_threads.to_string()));
        }
        if self.materialized {
            settings.push(("insert_allow_materialized_columns".to_string(), "1".to_string()));
        }
        QueryOptions { settings, timeout: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sliced(bounds: &[&str]) -> SlicedPartition {
        SlicedPartition {
            key: "team_id".into(),
            bounds: bounds.iter().map(|b| b.to_string()).collect(),
            done: BTreeSet::new(),
            in_flight: BTreeSet::new(),
        }
    }

    #[test]
    fn slices_cover_every_value_once() {
        let sliced = sliced(&["10", "20"]);
        assert_eq!(sliced.slice_count(), 3);
        assert_eq!(sliced.condition(0), "(team_id) < 10");
        assert_eq!(sliced.condition(1), "(team_id) >= 10 AND (team_id) < 20");
        assert_eq!(sliced.condition(2), "(team_id) >= 20");
    }

    #[test]
    fn bounds_are_literals_of_the_key_type() {
        assert_eq!(literal("504.5", "UInt64").as_deref(), Some("504"));
        assert_eq!(literal("2024-01-06", "Date").as_deref(), Some("CAST('2024-01-06' AS Date)"));
        assert_eq!(literal("2024-01-06 10:00:00", "DateTime('UTC')").as_deref(), Some("CAST('2024-01-06 10:00:00' AS DateTime('UTC'))"));
        assert_eq!(literal("nan", "Float64"), None);
        assert!(is_sliceable("UInt64") && is_sliceable("Int8") && is_sliceable("DateTime64(3)") && is_sliceable("Date"));
        assert!(!is_sliceable("String") && !is_sliceable("Nullable(UInt64)") && !is_sliceable("Float64") && !is_sliceable("UUID"));
    }

    #[test]
    fn a_resumed_copy_leaves_out_what_its_checkpoint_says_is_done() {
        let size = |id: &str, rows| PartitionSize { partition_id: id.into(), rows, bytes_on_disk: rows * 10 };
        let mut checkpoint = CopyCheckpoint { copied: ["a".to_string()].into(), slices: BTreeMap::new() };
        let mut big = sliced(&["10", "20"]);
        big.done.insert(1);
        checkpoint.slices.insert("c".into(), big);
        let (units, copied) = units_left(&[size("a", 5), size("b", 7), size("c", 30)], &checkpoint);
        assert_eq!(copied, 5 + 10);
        let described: Vec<String> = units.iter().map(|(unit, rows)| format!("{unit:?}:{rows}")).collect();
        assert_eq!(
            described,
            ["Partition(\"b\"):7", "Slice { partition_id: \"c\", index: 0 }:10", "Slice { partition_id: \"c\", index: 2 }:10"]
        );
        let old: CopyCheckpoint = serde_json::from_value(serde_json::json!({ "copied": ["a"] })).unwrap();
        assert_eq!(old.copied.len(), 1);
    }
}
