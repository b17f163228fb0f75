//! An example product that adopts amigo. The shop keeps its orders in ClickHouse (`orders`) and its shops in
//! Postgres (`shop`). Its migrations come two ways, as any product's may:
//!
//! - as files, in `examples/shop/migrations/` (`0001_orders_by_shop.toml` rewrites `orders` with a new sort
//!   key, with the rewrite-a-table recipe), loaded from `AMIGO_MIGRATIONS_DIR`;
//! - in Rust, where a file cannot say it: [`order_counts`] reads from ClickHouse and writes into Postgres,
//!   which no single SQL statement can. [`definitions`] hands them to the shop's own binary (`src/main.rs`,
//!   `server::run`), and to the tests.
//!
//! Only the engine's public API is used: [`MigrationDefinition`] and [`Operation`] to declare, the
//! [`MigrationContext`] to reach the databases, report progress and keep a checkpoint.

use engine::context::MigrationContext;
use engine::definition::{nothing_to_undo, CheckOutcome, MigrationDefinition, Operation};
use engine::parameters::ParameterSpec;
use engine::Result;
use serde::Deserialize;
use serde_json::json;

/// The shop's migrations written in Rust, for `server::run` and `engine::Engine::connect`.
pub fn definitions() -> Vec<MigrationDefinition> {
    vec![order_counts()]
}

/// The name of [`order_counts`].
pub const ORDER_COUNTS: &str = "0002_shop_order_counts";

/// `0002_shop_order_counts`: gives every shop (Postgres) the number of orders it has (ClickHouse), so that the
/// shop list needs no ClickHouse query.
///
/// 0. `ALTER TABLE shop ADD COLUMN order_count bigint` (rollback: drop it, which undoes operation 1 too);
/// 1. count each shop's orders in ClickHouse and write the counts `batch_size` shops at a time in shop id
///    order, each batch one transaction, checkpointed by the last shop id written: a resume goes on after it;
///    then 0 for the shops without orders.
pub fn order_counts() -> MigrationDefinition {
    MigrationDefinition::new(ORDER_COUNTS, "Give every shop its number of orders, counted in ClickHouse")
        .parameter(ParameterSpec::integer("batch_size", "Shops written per Postgres transaction", 500, 1, 100_000))
        .is_required(|context| async move { Ok(shop_exists(&context).await? && !has_order_count(&context).await?) })
        .precheck(precheck)
        .operation(Operation::postgres(
            "add the column order_count to shop",
            "ALTER TABLE shop ADD COLUMN IF NOT EXISTS order_count bigint",
            "ALTER TABLE shop DROP COLUMN IF EXISTS order_count",
        ))
        .operation(Operation::rust(
            "count every shop's orders in ClickHouse and write them batch_size shops at a time",
            write_order_counts,
            nothing_to_undo,
        ))
}

async fn shop_exists(context: &MigrationContext) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT to_regclass('shop') IS NOT NULL").fetch_one(&context.postgres).await?)
}

async fn has_order_count(context: &MigrationContext) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns
                        WHERE table_schema = current_schema() AND table_name = 'shop' AND column_name = 'order_count')",
    )
    .fetch_one(&context.postgres)
    .await?)
}

async fn precheck(context: MigrationContext) -> Result<CheckOutcome> {
    if !shop_exists(&context).await? {
        return Ok(CheckOutcome::Fail("the Postgres table shop does not exist".into()));
    }
    if !engine::tables::table_exists(&context.clickhouse, "orders").await? {
        return Ok(CheckOutcome::Fail("the ClickHouse table orders does not exist".into()));
    }
    Ok(CheckOutcome::Pass)
}

/// One shop's count, as ClickHouse returns it (the names and types are checked on servers that validate).
#[derive(Debug, clickhouse::Row, Deserialize)]
struct ShopOrders {
    shop_id: u32,
    orders: u64,
}

/// Operation 1. The counts are read once, for the shops after the checkpoint's; a batch written just before a
/// crash, ahead of its checkpoint, is written again with the same counts.
async fn write_order_counts(context: MigrationContext) -> Result<()> {
    // At least 1: the parameter's bounds are checked before a run starts.
    let batch_size = context.parameters.integer("batch_size") as usize;
    let after = context.checkpoint().and_then(|checkpoint| checkpoint["last_shop_id"].as_u64()).unwrap_or(0);
    let counts: Vec<ShopOrders> = context
        .clickhouse
        .client()
        .query("SELECT shop_id, count() AS orders FROM orders WHERE shop_id > ? GROUP BY shop_id ORDER BY shop_id")
        .bind(after)
        .fetch_all()
        .await?;
    for (index, batch) in counts.chunks(batch_size).enumerate() {
        let ids: Vec<i64> = batch.iter().map(|shop| i64::from(shop.shop_id)).collect();
        let orders: Vec<i64> = batch.iter().map(|shop| i64::try_from(shop.orders).unwrap_or(i64::MAX)).collect();
        sqlx::query("UPDATE shop SET order_count = counted.orders FROM unnest($1::bigint[], $2::bigint[]) AS counted (id, orders) WHERE shop.id = counted.id")
            .bind(&ids)
            .bind(&orders)
            .execute(&context.postgres)
            .await?;
        context.save_checkpoint(json!({ "last_shop_id": batch.last().map_or(after, |shop| u64::from(shop.shop_id)) })).await?;
        context.report_progress(((index + 1) * batch_size).min(counts.len()) as f64 / counts.len() as f64).await?;
    }
    sqlx::query("UPDATE shop SET order_count = 0 WHERE order_count IS NULL").execute(&context.postgres).await?;
    Ok(())
}
