//! The move-partitions recipe: moves whole partitions from one table to another of the same structure and
//! keys, one at a time, safe to run again after a crash at any point; nothing is dropped from the source
//! before every one of its rows is in the target.
//!
//! A partition moves by `ALTER TABLE from MOVE PARTITION ID … TO TABLE to` (20.2, one atomic statement) when
//! the target's partition is empty and the server has it. Otherwise (18.16, or a partition already partly in
//! the target: a move an older server interrupted, late rows moved back and forth) it is copy, verify, drop:
//! `REPLACE PARTITION … FROM` (hard links; idempotent: the target's partition becomes exactly the source's)
//! while every row of the target's partition is also in the source's, else the rows the target lacks, by
//! `row_identity`; then the source's rows must all be in the target (checksums, or identities after a
//! partial copy); then `DROP PARTITION` from the source. On servers without `MOVE PARTITION` a row inserted
//! into the partition between its verification and its drop (milliseconds) is lost: the partitions moved
//! must not receive inserts. On a cluster, each shard moves its own partitions, on one replica of it.

use std::sync::Arc;

use serde_json::json;

use crate::clickhouse::{ClickHouse, QueryOptions};
use crate::context::MigrationContext;
use crate::definition::Operation;
use crate::parameters::quote_string;
use crate::preview::{clickhouse_footprint, partition_sizes, DurationKind, OperationPreview, PartitionSize};
use crate::tables::{identities_missing, partition_filter, row_hash, strip_enclosing_parentheses};
use crate::{Error, Result};

/// How many times a partition that changes while it is moved is copied again before the move fails.
const MAX_ATTEMPTS: usize = 3;

/// Moves between two tables of the product's database that have the same structure and keys.
#[derive(Debug, Clone)]
pub struct MovePartitions {
    /// What identifies a row (`uuid`, `(team_id, id)`): a partition partly in both tables is completed by the
    /// rows the target lacks by it.
    pub row_identity: String,
}

/// Which partitions an operation moves: those of the source that hold rows and satisfy a condition.
#[derive(Debug, Clone)]
pub struct PartitionMove {
    pub from: String,
    pub to: String,
    /// SQL over the columns of `system.parts`, e.g. `partition_id < '202401'` for `toYYYYMM` partitions before
    /// 2024 or `partition_id < '20240121'` for days before 2024-01-21. `partition_id` is the same on every
    /// release; `partition` (the key's value as text) is written differently by old and new ones.
    pub partitions_where: String,
    pub moves: MovePartitions,
}

impl PartitionMove {
    /// The operation that moves the chosen partitions, oldest first, one at a time. The partitions are chosen
    /// at the first attempt and kept in the checkpoint, so that a resume moves the same ones (and moves a
    /// partition again if rows arrived in it since). Its rollback moves back every partition of the target
    /// that satisfies the condition.
    pub fn operation(self, description: &str) -> Operation {
        let recipe = Arc::new(self);
        let (rollback, preview) = (recipe.clone(), recipe.clone());
        Operation::rust(
            description,
            move |context| {
                let recipe = recipe.clone();
                async move { recipe.run(&context).await }
            },
            move |context| {
                let recipe = rollback.clone();
                async move { recipe.move_back(&context).await }
            },
        )
        .with_preview(move |context| {
            let recipe = preview.clone();
            async move { recipe.preview(&context).await }
        })
    }

    /// What a plan shows: the partitions the condition chooses now, with their rows and bytes, and the
    /// statements that move each (`MOVE PARTITION` into an empty partition where the server has it, else
    /// `REPLACE PARTITION` and `DROP PARTITION`). Each partition is read in full to verify it, so the estimate
    /// counts it as a copy.
    pub async fn preview(&self, context: &MigrationContext) -> Result<OperationPreview> {
        let clickhouse = &context.clickhouse;
        let chosen = self.partitions_of(context, &self.from).await?;
        let partitions: Vec<PartitionSize> = partition_sizes(clickhouse, &self.from)
            .await?
            .into_iter()
            .filter(|partition| chosen.contains(&partition.partition_id))
            .collect();
        let in_target: Vec<String> =
            partition_sizes(clickhouse, &self.to).await?.into_iter().map(|partition| partition.partition_id).collect();
        let (from_table, to_table) = (clickhouse.qualified(&self.from), clickhouse.qualified(&self.to));
        let mut statements = Vec::new();
        for partition in &partitions {
            let id = quote_string(&partition.partition_id);
            if clickhouse.capabilities().moves_partitions_to_tables() && !in_target.contains(&partition.partition_id) {
                statements.push(format!("ALTER TABLE {from_table} MOVE PARTITION ID {id} TO TABLE {to_table}"));
            } else {
                statements.push(format!("ALTER TABLE {to_table} REPLACE PARTITION ID {id} FROM {from_table}"));
                statements.push(format!("ALTER TABLE {from_table} DROP PARTITION ID {id}"));
            }
        }
        let footprint = clickhouse_footprint(&self.from, &partitions);
        Ok(OperationPreview {
            statements,
            note: format!(
                "each partition is verified by row counts and checksums before it leaves {}; the rollback moves back every partition of {} the condition chooses",
                self.from, self.to
            ),
            copied_bytes: footprint.bytes,
            tables: vec![footprint],
            duration: DurationKind::Copy,
            ..OperationPreview::default()
        })
    }

    /// Moves the partitions chosen at the first attempt, skipping none: a partition already moved is empty in
    /// the source, unless rows arrived in it since, which then follow. On a cluster, on every shard at once
    /// (each with its own checkpoint), between the tables of that shard's node: name the replicated tables,
    /// not `Distributed` ones over them.
    pub async fn run(&self, context: &MigrationContext) -> Result<()> {
        context.on_every_shard(|context| async move { self.run_on_shard(&context).await }).await
    }

    async fn run_on_shard(&self, context: &MigrationContext) -> Result<()> {
        let checkpoint = context.checkpoint().unwrap_or_default();
        let chosen: Vec<String> = match serde_json::from_value(checkpoint["partitions"].clone()) {
            Ok(partitions) => partitions,
            Err(_) => self.partitions_of(context, &self.from).await?,
        };
        let mut moved: Vec<String> = serde_json::from_value(checkpoint["moved"].clone()).unwrap_or_default();
        context.save_checkpoint(json!({ "partitions": chosen, "moved": moved })).await?;
        let sizes = partition_sizes(&context.clickhouse, &self.from).await?;
        let tracked: Vec<PartitionSize> = chosen
            .iter()
            .map(|id| {
                let size = sizes.iter().find(|size| &size.partition_id == id);
                PartitionSize {
                    partition_id: id.clone(),
                    rows: size.map_or(0, |size| size.rows),
                    bytes_on_disk: size.map_or(0, |size| size.bytes_on_disk),
                }
            })
            .collect();
        context.track_partitions(&tracked, &moved.iter().cloned().collect()).await?;
        let total = chosen.len().max(1) as f64;
        for (index, partition_id) in chosen.iter().enumerate() {
            context.hold_between_units().await?;
            let started = std::time::Instant::now();
            self.moves
                .move_partition(context, &self.from, &self.to, partition_id, index as f64 / total..(index + 1) as f64 / total)
                .await?;
            context.partition_done(partition_id, started.elapsed()).await?;
            if !moved.contains(partition_id) {
                moved.push(partition_id.clone());
            }
            context.save_checkpoint(json!({ "partitions": chosen, "moved": moved })).await?;
            context.report_progress((index + 1) as f64 / total).await?;
        }
        Ok(())
    }

    /// Rollback: every partition of the target that satisfies the condition back into the source, on every shard
    /// of a cluster.
    pub async fn move_back(&self, context: &MigrationContext) -> Result<()> {
        context.on_every_shard(|context| async move { self.move_back_on_shard(&context).await }).await
    }

    async fn move_back_on_shard(&self, context: &MigrationContext) -> Result<()> {
        let partitions = self.partitions_of(context, &self.to).await?;
        let total = partitions.len().max(1) as f64;
        for (index, partition_id) in partitions.iter().enumerate() {
            self.moves
                .move_partition(context, &self.to, &self.from, partition_id, index as f64 / total..(index + 1) as f64 / total)
                .await?;
            context.report_progress((index + 1) as f64 / total).await?;
        }
        Ok(())
    }

    /// The partitions of `table` that hold rows and satisfy the condition, in partition id order.
    async fn partitions_of(&self, context: &MigrationContext, table: &str) -> Result<Vec<String>> {
        // Formatted and sent raw, not bound: the condition is SQL of its own, and may hold a `?`.
        let query = format!(
            "SELECT partition_id FROM system.parts WHERE database = {} AND table = {} AND active AND rows > 0 AND ({})
             GROUP BY partition_id ORDER BY partition_id",
            quote_string(context.clickhouse.database()),
            quote_string(table),
            self.partitions_where
        );
        Ok(context.clickhouse.client().query_raw(&query).fetch_all().await?)
    }
}

impl MovePartitions {
    /// Moves partition `partition_id` from `from` to `to`; its progress moves the operation's over `span`.
    pub async fn move_partition(
        &self,
        context: &MigrationContext,
        from: &str,
        to: &str,
        partition_id: &str,
        span: std::ops::Range<f64>,
    ) -> Result<()> {
        let clickhouse = &context.clickhouse;
        let partition = quote_string(partition_id);
        let (from_table, to_table) = (clickhouse.qualified(from), clickhouse.qualified(to));
        // Both tables have the same columns and partition key: one filter and one row hash serve both.
        let filter = partition_filter(clickhouse, from, partition_id).await?;
        let hash = row_hash(clickhouse, from).await?;
        for _ in 0..MAX_ATTEMPTS {
            let source = checksum_where(clickhouse, from, &hash, &filter).await?;
            if source.0 == 0 {
                return Ok(());
            }
            let target = checksum_where(clickhouse, to, &hash, &filter).await?;
            // `MOVE PARTITION` adds the source's parts to whatever the target's partition holds: only into an
            // empty one.
            if clickhouse.capabilities().moves_partitions_to_tables() && target.0 == 0 {
                let sql = format!("ALTER TABLE {from_table} MOVE PARTITION ID {partition} TO TABLE {to_table}");
                context.clickhouse_execute_part(&sql, &QueryOptions::default(), span.clone()).await?;
                let after =
                    checksum_where(clickhouse, from, &hash, &filter).await?.0 + checksum_where(clickhouse, to, &hash, &filter).await?.0;
                if after < source.0 + target.0 {
                    return Err(Error::Migration(format!(
                        "partition {partition_id}: {from} and {to} held {} rows before the move and {after} after; nothing more is moved, investigate",
                        source.0 + target.0
                    )));
                }
                continue;
            }
            let identity = &self.row_identity;
            let replace = target.0 == 0 || identities_missing(clickhouse, to, from, identity, &filter).await? == 0;
            let copy = if replace {
                format!("ALTER TABLE {to_table} REPLACE PARTITION ID {partition} FROM {from_table}")
            } else {
                // `(a, b) NOT IN (SELECT a, b …)`: 18.16 refuses a tuple on both sides.
                let identity = strip_enclosing_parentheses(identity);
                format!(
                    "INSERT INTO {to_table} SELECT * FROM {from_table} WHERE {filter}
                     AND ({identity}) NOT IN (SELECT {identity} FROM {to_table} WHERE {filter})"
                )
            };
            context.clickhouse_execute_part(&copy, &QueryOptions::default(), span.clone()).await?;
            let verified = if replace {
                checksum_where(clickhouse, from, &hash, &filter).await? == checksum_where(clickhouse, to, &hash, &filter).await?
            } else {
                identities_missing(clickhouse, from, to, identity, &filter).await? == 0
            };
            if !verified {
                tracing::warn!(partition_id, from, to, "the partition changed while it was copied; copying it again");
                continue;
            }
            let sql = format!("ALTER TABLE {from_table} DROP PARTITION ID {partition}");
            context.clickhouse_execute_part(&sql, &QueryOptions::default(), span.end..span.end).await?;
            return Ok(());
        }
        if checksum_where(clickhouse, from, &hash, &filter).await?.0 == 0 {
            return Ok(());
        }
        Err(Error::Migration(format!(
            "partition {partition_id} of {from} kept receiving rows while it was moved ({MAX_ATTEMPTS} tries); none of it was \
             dropped. Stop inserts into that partition, then resume"
        )))
    }
}

/// Rows and an order-independent hash of every row of one partition of `table` (zeros when it has none): two
/// tables of the same structure with equal checksums hold the same rows there.
pub async fn partition_checksum(clickhouse: &ClickHouse, table: &str, partition_id: &str) -> Result<(u64, u64)> {
    let filter = partition_filter(clickhouse, table, partition_id).await?;
    checksum_where(clickhouse, table, &row_hash(clickhouse, table).await?, &filter).await
}

/// Rows of `table` that `filter` selects, and the sum of `row_hash` over them.
async fn checksum_where(clickhouse: &ClickHouse, table: &str, row_hash: &str, filter: &str) -> Result<(u64, u64)> {
    let query = format!("SELECT count() AS rows, sum({row_hash}) AS checksum FROM {} WHERE {filter}", clickhouse.qualified(table));
    Ok(clickhouse.client().query_raw(&query).fetch_one().await?)
}
