//! The Postgres batches recipe: an `UPDATE` of a product's Postgres table applied a batch of rows at a time in
//! the order of an integer key, each batch one short transaction, the last key done saved as the checkpoint
//! and progress the rows done out of those there were.

use std::sync::Arc;

use serde_json::json;
use sqlx::Row;

use crate::context::MigrationContext;
use crate::definition::{nothing_to_undo, Operation};
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
        Operation::rust(
            description,
            move |context| {
                let batches = batches.clone();
                async move { batches.run(&context).await }
            },
            nothing_to_undo,
        )
    }

    /// Batches of keys after the checkpoint's, until none is left.
    pub async fn run(&self, context: &MigrationContext) -> Result<()> {
        let postgres = &context.postgres;
        let PostgresBatches { table, key, set, pending, .. } = self;
        let batch_size = context.parameters.integer(&self.batch_size_parameter);
        let mut last_key = context.checkpoint().and_then(|checkpoint| checkpoint["last_key"].as_i64());
        let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(postgres).await?;
        let mut done: i64 = match last_key {
            Some(last_key) => {
                sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE {key} <= $1")).bind(last_key).fetch_one(postgres).await?
            }
            None => 0,
        };
        let batch = format!(
            "WITH batch AS (SELECT {key} FROM {table} WHERE {key} > $1 ORDER BY {key} LIMIT $2),
                  updated AS (UPDATE {table} SET {set} FROM batch
                              WHERE {table}.{key} = batch.{key} AND ({pending}) RETURNING {table}.{key})
             SELECT (SELECT max({key}) FROM batch) AS last_key, (SELECT count(*) FROM batch) AS rows"
        );
        loop {
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
