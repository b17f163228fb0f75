//! The example product end to end on real servers: its file migration and its Rust one, registered the way
//! its binary registers them, run by a runner; and its binary, which knows both.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use engine::status::Status;
use engine::testing::{is_settled, spawn_runner, wait_for};
use engine::{Engine, EngineConfig};
use serde_json::json;

const TESTER: &str = "tester@example.com";
const SHOPS: i64 = 50;
/// Shops 1 to 40 have orders; 41 to 50 have none.
const SHOPS_WITH_ORDERS: u64 = 40;
const ORDERS: u64 = 20_000;

fn migrations_folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("migrations")
}

/// Fresh databases holding the shop's schema and data, and the configuration that loads its files.
async fn shop_databases() -> EngineConfig {
    let config = EngineConfig { migrations_dir: Some(migrations_folder()), ..engine::testing::fresh_databases().await };
    let postgres = sqlx::PgPool::connect(&config.database_url).await.unwrap();
    sqlx::query("CREATE TABLE shop (id bigint PRIMARY KEY, name text NOT NULL)").execute(&postgres).await.unwrap();
    sqlx::query("INSERT INTO shop SELECT id, 'shop ' || id FROM generate_series(1, $1) AS id")
        .bind(SHOPS)
        .execute(&postgres)
        .await
        .unwrap();
    let clickhouse = clickhouse::Client::default().with_url(&config.clickhouse_url).with_database(&config.clickhouse_database);
    clickhouse
        .query(
            "CREATE TABLE orders (order_id UInt64, shop_id UInt32, total_cents UInt64, created_at DateTime)
             ENGINE = MergeTree PARTITION BY toYYYYMM(created_at) ORDER BY order_id",
        )
        .execute()
        .await
        .unwrap();
    clickhouse
        .query(&format!(
            "INSERT INTO orders SELECT number, 1 + number % 97 % {SHOPS_WITH_ORDERS}, number * 13 % 10000,
                    toDateTime('2025-01-01 00:00:00') + number * 1500
             FROM numbers({ORDERS})"
        ))
        .execute()
        .await
        .unwrap();
    config
}

#[tokio::test]
async fn the_shops_file_and_rust_migrations_run_side_by_side() {
    let config = shop_databases().await;
    let engine = Engine::connect(&config, shop::definitions()).await.expect("connect with the shop's migrations");
    let names: Vec<String> = engine.list().await.unwrap().into_iter().map(|overview| overview.record.name).collect();
    assert_eq!(names, ["0001_orders_by_shop", shop::ORDER_COUNTS]);
    let clickhouse = engine.clickhouse().client();
    let expected: Vec<(u32, u64)> =
        clickhouse.query("SELECT shop_id, count() FROM orders GROUP BY shop_id ORDER BY shop_id").fetch_all().await.unwrap();
    let _runner = spawn_runner(&engine);

    engine.start("0001_orders_by_shop", TESTER, json!({ "verify_checksums": true }).as_object().unwrap()).await.unwrap();
    let rewritten = wait_for(&engine, "0001_orders_by_shop", Duration::from_secs(180), "settled", is_settled).await;
    assert_eq!(rewritten.record.status, Status::Completed, "{:?}", engine.errors("0001_orders_by_shop").await);
    let sorting_key: String = clickhouse
        .query("SELECT sorting_key FROM system.tables WHERE database = currentDatabase() AND name = 'orders'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(sorting_key, "shop_id, created_at, order_id");
    let after: Vec<(u32, u64)> =
        clickhouse.query("SELECT shop_id, count() FROM orders GROUP BY shop_id ORDER BY shop_id").fetch_all().await.unwrap();
    assert_eq!(after, expected, "every order is in the rewritten table");

    engine.start(shop::ORDER_COUNTS, TESTER, json!({ "batch_size": 7 }).as_object().unwrap()).await.unwrap();
    let counted = wait_for(&engine, shop::ORDER_COUNTS, Duration::from_secs(60), "settled", is_settled).await;
    assert_eq!(counted.record.status, Status::Completed, "{:?}", engine.errors(shop::ORDER_COUNTS).await);
    let stored: Vec<(i64, i64)> =
        sqlx::query_as("SELECT id, order_count FROM shop ORDER BY id").fetch_all(engine.store().pool()).await.unwrap();
    let mut wanted: Vec<(i64, i64)> = expected.iter().map(|&(shop, orders)| (i64::from(shop), orders as i64)).collect();
    wanted.extend(((SHOPS_WITH_ORDERS as i64 + 1)..=SHOPS).map(|shop| (shop, 0)));
    assert_eq!(stored, wanted);
}

#[tokio::test]
async fn the_rust_migration_refuses_to_start_without_the_orders_table() {
    let config = engine::testing::fresh_databases().await;
    let postgres = sqlx::PgPool::connect(&config.database_url).await.unwrap();
    sqlx::query("CREATE TABLE shop (id bigint PRIMARY KEY, name text NOT NULL)").execute(&postgres).await.unwrap();
    let engine = Engine::connect(&config, shop::definitions()).await.unwrap();
    let _runner = spawn_runner(&engine);
    engine.start(shop::ORDER_COUNTS, TESTER, &serde_json::Map::new()).await.unwrap();
    let refused = wait_for(&engine, shop::ORDER_COUNTS, Duration::from_secs(30), "settled", is_settled).await;
    assert_eq!(refused.record.status, Status::FailedAtStartup);
    let errors = engine.errors(shop::ORDER_COUNTS).await.unwrap();
    assert!(errors.iter().any(|error| error.message.contains("the ClickHouse table orders does not exist")), "{errors:?}");
}

#[test]
fn the_shops_binary_knows_its_rust_migration_and_its_files() {
    let output = Command::new(env!("CARGO_BIN_EXE_shop-amigo"))
        .args(["migrations", "check"])
        .env("AMIGO_MIGRATIONS_DIR", migrations_folder())
        .env_remove("AMIGO_DEMO")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "ok 0001_orders_by_shop (5 operations)\nok 0002_shop_order_counts (2 operations)\n"
    );
}
