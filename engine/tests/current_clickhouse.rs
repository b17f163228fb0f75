//! What amigo learns of the ClickHouse it connects to, and the behaviours of current releases it must meet,
//! checked against the server `AMIGO_CLICKHOUSE_URL` names: Debian's 18.16 in the first tier of
//! `scripts/test`, a current ClickHouse (26.9) in the second. Each case states what it expects of both.

use std::time::Duration;

use engine::capabilities::DatabaseEngine;
use engine::tables::partition_row_counts;
use engine::Engine;

async fn connected() -> Engine {
    let config = engine::testing::fresh_databases().await;
    Engine::connect(&config, vec![]).await.expect("connect")
}

#[tokio::test]
async fn the_capabilities_are_read_from_the_server_and_its_database() {
    let engine = connected().await;
    let clickhouse = engine.clickhouse();
    let capabilities = clickhouse.capabilities();
    let engine_name: String =
        clickhouse.client().query("SELECT engine FROM system.databases WHERE name = currentDatabase()").fetch_one().await.unwrap();
    assert_eq!(capabilities.database_engine, DatabaseEngine::from_name(&engine_name));
    assert_eq!(capabilities.version.to_string(), clickhouse.server_version().await.unwrap());
    if capabilities.version.at_least(20, 10) {
        // A database created without an engine is Atomic on every current release.
        assert_eq!(capabilities.database_engine, DatabaseEngine::Atomic);
        assert!(capabilities.exchanges_tables() && capabilities.validates_rows());
        assert!(!capabilities.join_get_mutation_settings().is_empty(), "{capabilities:?}");
    } else {
        assert_eq!(capabilities.database_engine, DatabaseEngine::Ordinary);
        assert!(capabilities.rename_waits_for_inserts() && !capabilities.validates_rows());
        assert!(capabilities.join_get_mutation_settings().is_empty(), "18.16 knows no such setting: {capabilities:?}");
    }
}

#[tokio::test]
async fn mutations_are_read_under_the_servers_validation() {
    let engine = connected().await;
    let client = engine.clickhouse().client();
    client.query("CREATE TABLE numbers_table (n UInt64) ENGINE = MergeTree ORDER BY n").execute().await.unwrap();
    client.query("INSERT INTO numbers_table SELECT number FROM numbers(1000)").execute().await.unwrap();
    client.query("ALTER TABLE numbers_table DELETE WHERE n % 2 = 0").execute().await.unwrap();
    let mutations = wait_until(Duration::from_secs(20), || async {
        let mutations = engine.clickhouse().mutations("numbers_table").await.expect("system.mutations read into MutationStatus");
        mutations.iter().all(|mutation| mutation.is_done == 1).then_some(mutations)
    })
    .await;
    assert_eq!(mutations.len(), 1, "{mutations:?}");
    assert!(mutations[0].command.contains("DELETE WHERE"), "{mutations:?}");
    assert_eq!(mutations[0].parts_to_do, 0);
}

#[tokio::test]
async fn partitions_emptied_by_a_drop_are_not_counted() {
    let engine = connected().await;
    let client = engine.clickhouse().client();
    client
        .query("CREATE TABLE monthly (day Date, n UInt64) ENGINE = MergeTree PARTITION BY toYYYYMM(day) ORDER BY n")
        .execute()
        .await
        .unwrap();
    client.query("INSERT INTO monthly SELECT toDate('2024-01-01') + number, number FROM numbers(61)").execute().await.unwrap();
    client.query("ALTER TABLE monthly DROP PARTITION 202401").execute().await.unwrap();
    let counts = partition_row_counts(engine.clickhouse(), "monthly").await.unwrap();
    assert_eq!(counts, [("202402".to_string(), 29), ("202403".to_string(), 1)]);
}

/// Calls `probe` every 100 ms until it returns something, at most `limit`.
async fn wait_until<T, F, Fut>(limit: Duration, probe: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_question_mark_in_a_statement_is_sent_as_written() {
    let engine = connected().await;
    let clickhouse = engine.clickhouse();
    clickhouse.client().query("CREATE TABLE notes (text String) ENGINE = MergeTree ORDER BY text").execute().await.unwrap();
    let query_id = format!("amigo-test-{}", uuid::Uuid::new_v4().simple());
    clickhouse
        .execute("INSERT INTO notes VALUES ('why?'), ('??')", &query_id, &engine::clickhouse::QueryOptions::default())
        .await
        .expect("a ? is no bind marker in a statement amigo sends");
    let texts: Vec<String> = clickhouse.client().query("SELECT text FROM notes ORDER BY text").fetch_all().await.unwrap();
    assert_eq!(texts, ["??", "why?"]);
}

#[tokio::test]
async fn a_replicas_state_is_read_under_the_servers_validation() {
    // The lag and read-only readings of a cluster's replicas (system.replicas, system.replication_queue) on a
    // database without replicated tables: they answer, with nothing behind. A query or a typed read the server
    // refused would read as a replica not answering.
    let engine = connected().await;
    let state = engine::cluster::ReplicaState::read(engine.clickhouse(), "entry").await;
    assert_eq!(
        state,
        engine::cluster::ReplicaState { node: "entry".into(), answering: true, readonly_tables: 0, lag_seconds: 0, queue_size: 0 }
    );
}
