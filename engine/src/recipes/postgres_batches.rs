//! The Postgres batches recipe: an `UPDATE` of a product's Postgres table applied a batch of rows at a time in
//! the order of an integer key, each batch one short transaction, the last key done saved as the checkpoint
//! and progress the rows done out of those there were.

use std::sync::Arc;

use serde_json::json;
use sqlx::Row;

use crate::context::MigrationContext;
use crate::definition::{nothing_to_undo, Operation};
use crate::preview::{DurationKind, OperationPreview, Server, TableFootprint};
use crate::Result;

/// An update of `table` in batches.
#[derive(Debug, Clone)]
pub struct PostgresBatches {
    /// The table updated, as Postgres names it (`shop`, `app.orders`).
    pub table: String,
    /// Its integer key column: batches follow its order.
    pub key: String,
    /// The assignments of the `UPDATE` (`slug = lower(shop.name)`); the table is named by its own name.
    pub set: String,
    /// The condition of a row still to update (`slug IS NULL`): a batch updates only those, so that a batch done
    /// again after a crash changes nothing.
    pub pending: String,
    /// The integer parameter of the migration that says how many rows a batch takes.
    pub batch_size_parameter: String,
}

impl PostgresBatches {
    /// The operation that runs the batches. Its rollback undoes nothing: what the update wrote, an earlier
    /// operation's rollback removes (e.g. dropping the column it fills).
    pub fn operation(self, description: &str) -> Operation {
        let batches = Arc::new(self);
        let preview = batches.clone();
        Operation::rust(
            description,
            move |context| {
                let batches = batches.clone();
                async move { batches.run(&context).await }
            },
            nothing_to_undo,
        )
        .with_preview(move |context| {
            let batches = preview.clone();
            async move { batches.preview(&context).await }
        })
    }

    /// What a plan shows: the batch statement (`$1` the last key done, `$2` the batch size), the rows still to
    /// update and the table's size.
    pub async fn preview(&self, context: &MigrationContext) -> Result<OperationPreview> {
        let PostgresBatches { table, pending, .. } = self;
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE {pending}")).fetch_one(&context.postgres).await?;
        let bytes: i64 = sqlx::query_scalar("SELECT pg_total_relation_size($1::regclass)").bind(table).fetch_one(&context.postgres).await?;
        Ok(OperationPreview {
            statements: vec![self.batch_sql()],
            note: format!(
                "sent once per batch of {} rows, $1 the last {} done, $2 the batch size; each batch is one short transaction",
                context.parameters.integer(&self.batch_size_parameter),
                self.key
            ),
            tables: vec![TableFootprint {
                server: Server::Postgres,
                table: table.clone(),
                partitions: 0,
                rows: u64::try_from(rows).unwrap_or_default(),
                bytes: u64::try_from(bytes).unwrap_or_default(),
            }],
            duration: DurationKind::Unknown,
            ..OperationPreview::default()
        })
    }

    /// One batch: the next keys after `$1`, at most `$2`, updated where still pending; returns the batch's last
    /// key and its size.
    fn batch_sql(&self) -> String {
        let PostgresBatches { table, key, set, pending, .. } = self;
        format!(
            "WITH batch AS (SELECT {key} FROM {table} WHERE {key} > $1 ORDER BY {key} LIMIT $2),
                  updated AS (UPDATE {table} SET {set} FROM batch
                              WHERE {table}.{key} = batch.{key} AND ({pending}) RETURNING {table}.{key})
             SELECT (SELECT max({key}) FROM batch) AS last_key, (SELECT count(*) FROM batch) AS rows"
        )
    }

    /// Batches of keys after the checkpoint's, until none is left.
    pub async fn run(&self, context: &MigrationContext) -> Result<()> {
        let postgres = &context.postgres;
        let PostgresBatches { table, key, .. } = self;
        let mut last_key = context.checkpoint().and_then(|checkpoint| checkpoint["last_key"].as_i64());
        let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(postgres).await?;
        let mut done: i64 = match last_key {
            Some(last_key) => {
                sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE {key} <= $1")).bind(last_key).fetch_one(postgres).await?
            }
            None => 0,
        };
        let batch = self.batch_sql();
        loop {
            context.hold_between_units().await?;
            // Adjustable: staff may change it while the batches run.
            let batch_size = context.integer_now(&self.batch_size_parameter);
            let row = sqlx::query(&batch).bind(last_key.unwrap_or(i64::MIN)).bind(batch_size).fetch_one(postgres).await?;
            let Some(batch_last_key) = row.try_get::<Option<i64>, _>("last_key")? else {
                return Ok(());
            };
            last_key = Some(batch_last_key);
            done += row.try_get::<i64, _>("rows")?;
            context.save_checkpoint(json!({ "last_key": batch_last_key })).await?;
            context.report_progress(done as f64 / total.max(1) as f64).await?;
        }
    }
}
