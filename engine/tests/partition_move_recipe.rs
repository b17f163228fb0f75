//! The move-partitions recipe on a table that is not the demo's (daily partitions of a `ReplacingMergeTree`,
//! rows identified by `(shop_id, order_id)`): the chosen partitions move and nothing else, a partition already
//! partly in the archive is completed by row identity, a failure after the moves is rolled back with every row
//! back; on whichever ClickHouse `AMIGO_CLICKHOUSE_URL` names (both tiers of `scripts/test`).

use std::time::Duration;

use engine::definition::{MigrationDefinition, Operation};
use engine::parameters::ParameterSpec;
use engine::recipes::move_partitions::{partition_checksum, MovePartitions, PartitionMove};
use engine::status::Status;
use engine::testing::{is_settled, spawn_runner, wait_for};
use engine::Engine;

const NAME: &str = "0100_archive_old_orders";
const TESTER: &str = "tester@example.com";
/// 40 days of orders from 2024-01-01: days before 2024-01-21 move.
const DAYS: u64 = 40;
const ORDERS_PER_DAY: u64 = 500;

fn definition() -> MigrationDefinition {
    MigrationDefinition::new(NAME, "Archive the orders of the days before 2024-01-21")
        .operation(Operation::clickhouse(
            "create orders_archive like orders",
            "CREATE TABLE IF NOT EXISTS {database}.orders_archive AS {database}.orders",
            "DROP TABLE IF EXISTS {database}.orders_archive",
        ))
        .operation(
            PartitionMove {
                from: "orders".into(),
                to: "orders_archive".into(),
                partitions_where: "partition_id < '20240121'".into(),
                moves: MovePartitions { row_identity: "(shop_id, order_id)".into() },
            }
            .operation("move the days before 2024-01-21 into orders_archive"),
        )
        .parameter(ParameterSpec::boolean("fail_after_moving", "Fail once the partitions moved (the rollback test)", false))
        .operation(Operation::clickhouse("fail if asked", "SELECT throwIf({fail_after_moving})", ""))
}

async fn seeded() -> Engine {
    let config = engine::testing::fresh_databases().await;
    let engine = Engine::connect(&config, vec![definition()]).await.expect("connect");
    let client = engine.clickhouse().client();
    client
        .query(
            "CREATE TABLE orders (shop_id UInt32, order_id UInt64, day Date, total Float64, version UInt32)
             ENGINE = ReplacingMergeTree(version) PARTITION BY day ORDER BY (shop_id, order_id)",
        )
        .execute()
        .await
        .unwrap();
    let insert = format!(
        "INSERT INTO orders SELECT number % 7, number, toDate('2024-01-01') + intDiv(number, {ORDERS_PER_DAY}), number / 10, 1
         FROM numbers({})",
        DAYS * ORDERS_PER_DAY
    );
    client.query(&insert).execute().await.unwrap();
    engine
}

async fn days(engine: &Engine, table: &str) -> Vec<String> {
    engine
        .clickhouse()
        .client()
        .query(&format!("SELECT DISTINCT toString(day) AS day_text FROM {table} ORDER BY day_text"))
        .fetch_all()
        .await
        .unwrap()
}

async fn checksums(engine: &Engine, table: &str) -> Vec<(u64, u64)> {
    let mut all = Vec::new();
    for day in days(engine, table).await {
        let partition_id = day.replace('-', "");
        all.push(partition_checksum(engine.clickhouse(), table, &partition_id).await.unwrap());
    }
    all
}

async fn run(engine: &Engine, fail_after_moving: bool) -> engine::MigrationOverview {
    let parameters = serde_json::json!({ "fail_after_moving": fail_after_moving });
    engine.start(NAME, TESTER, parameters.as_object().unwrap()).await.unwrap();
    wait_for(engine, NAME, Duration::from_secs(120), "settled", is_settled).await
}

#[tokio::test]
async fn the_chosen_partitions_move_and_nothing_else() {
    let engine = seeded().await;
    let original = checksums(&engine, "orders").await;
    assert_eq!(original.len() as u64, DAYS);
    let _runner = spawn_runner(&engine);
    let done = run(&engine, false).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(NAME).await);

    let (kept, archived) = (days(&engine, "orders").await, days(&engine, "orders_archive").await);
    assert_eq!(archived.len(), 20, "{archived:?}");
    assert_eq!(archived.first().map(String::as_str), Some("2024-01-01"));
    assert_eq!(archived.last().map(String::as_str), Some("2024-01-20"));
    assert_eq!(kept.first().map(String::as_str), Some("2024-01-21"));
    let mut both = checksums(&engine, "orders_archive").await;
    both.extend(checksums(&engine, "orders").await);
    assert_eq!(both, original, "every row in exactly one of the two tables");
}

#[tokio::test]
async fn a_failure_after_the_moves_is_rolled_back_with_every_row_back() {
    let engine = seeded().await;
    let original = checksums(&engine, "orders").await;
    let _runner = spawn_runner(&engine);
    let rolled_back = run(&engine, true).await;
    assert_eq!(rolled_back.record.status, Status::RolledBack, "{:?}", engine.errors(NAME).await);
    assert_eq!(checksums(&engine, "orders").await, original);
    let archive_exists: u64 = engine
        .clickhouse()
        .client()
        .query("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'orders_archive'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(archive_exists, 0);
}

#[tokio::test]
async fn a_partition_already_in_the_archive_with_rows_of_its_own_is_completed_by_row_identity() {
    let engine = seeded().await;
    let client = engine.clickhouse().client();
    // The archive holds a row of 2024-01-05 that orders does not (moved there earlier) and one orders has too.
    client.query("CREATE TABLE orders_archive AS orders").execute().await.unwrap();
    client.query("INSERT INTO orders_archive VALUES (1, 999999, '2024-01-05', 1.5, 1)").execute().await.unwrap();
    client
        .query("INSERT INTO orders_archive SELECT * FROM orders WHERE day = '2024-01-05' AND order_id % 100 = 0")
        .execute()
        .await
        .unwrap();
    let _runner = spawn_runner(&engine);
    let done = run(&engine, false).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(NAME).await);
    let (rows, distinct): (u64, u64) = client
        .query("SELECT count(), uniqExact(shop_id, order_id) FROM orders_archive WHERE day = '2024-01-05'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!((rows, distinct), (ORDERS_PER_DAY + 1, ORDERS_PER_DAY + 1), "the day's rows once each, and the archive's own");
    let left: u64 = client.query("SELECT count() FROM orders WHERE day = '2024-01-05'").fetch_one().await.unwrap();
    assert_eq!(left, 0);
}
