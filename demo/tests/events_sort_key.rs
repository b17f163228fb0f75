//! 0001_events_sort_key on a real seeded events table: the copy is complete and identical, inserts made
//! during the copy are kept, stop-and-rollback restores the original, and a new-schema instance does not
//! need it. (The SIGKILL-and-resume case spawns the binary: server/tests/resume_after_sigkill.rs.)

use std::time::Duration;

use demo::migrations::events_sort_key::{self, NAME};
use demo::{events_partition_checksums, seed, PartitionChecksum, SeedRequest};
use engine::status::Status;
use engine::testing::{is_settled, spawn_runner, table_names, wait_for};
use engine::{Engine, EngineConfig};
use serde_json::json;
use tokio::sync::watch;

const TESTER: &str = "tester@example.com";

async fn seeded(events: u64) -> (Engine, Vec<PartitionChecksum>) {
    let mut config = engine::testing::fresh_databases().await;
    config.lease_timeout = Duration::from_secs(2);
    seeded_with(config, events).await
}

async fn seeded_with(config: EngineConfig, events: u64) -> (Engine, Vec<PartitionChecksum>) {
    let engine = Engine::connect(&config, vec![events_sort_key::definition()]).await.expect("connect");
    seed(engine.clickhouse(), &SeedRequest::new(events)).await.expect("seed");
    let checksums = events_partition_checksums(engine.clickhouse(), "events").await.unwrap();
    (engine, checksums)
}

async fn start(engine: &Engine, parameters: serde_json::Value) {
    engine.start(NAME, TESTER, parameters.as_object().unwrap()).await.expect("start");
}

async fn settled(engine: &Engine) -> engine::MigrationOverview {
    wait_for(engine, NAME, Duration::from_secs(120), "settled", is_settled).await
}

async fn table_keys(engine: &Engine, table: &str) -> (String, String) {
    engine
        .clickhouse()
        .client()
        .query("SELECT sorting_key, sampling_key FROM system.tables WHERE database = currentDatabase() AND name = ?")
        .bind(table)
        .fetch_one::<(String, String)>()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_copy_is_complete_identical_and_has_the_new_keys() {
    let (engine, original) = seeded(300_000).await;
    assert!(original.len() >= 18, "{original:?}");
    let _runner = spawn_runner(&engine);
    start(&engine, json!({})).await;
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(NAME).await);

    assert_eq!(events_partition_checksums(engine.clickhouse(), "events").await.unwrap(), original);
    assert_eq!(events_partition_checksums(engine.clickhouse(), "events_0001_backup").await.unwrap(), original);
    let (sorting_key, sampling_key) = table_keys(&engine, "events").await;
    assert_eq!(sorting_key, "team_id, toDate(timestamp), event, cityHash64(distinct_id), uuid");
    assert_eq!(sampling_key, "cityHash64(distinct_id)");
    assert_eq!(table_names(&engine).await, ["events", "events_0001_backup", "person"]);
    let sampled: u64 = engine.clickhouse().client().query("SELECT count() FROM events SAMPLE 1/10").fetch_one().await.unwrap();
    assert!(sampled > 0 && sampled < 300_000, "SAMPLE BY works: {sampled}");
}

#[tokio::test]
async fn rows_inserted_while_the_copy_runs_are_not_lost() {
    let (engine, _) = seeded(1_000_000).await;
    let seeded_rows: u64 = engine.clickhouse().client().query("SELECT count() FROM events").fetch_one().await.unwrap();
    // The product keeps inserting: batches of 1,000 events into the current month, until the swap is done.
    let inserter_engine = engine.clone();
    let (stop_inserting, mut stopped) = watch::channel(false);
    let inserter = tokio::spawn(async move {
        let mut batches = 0u64;
        while !*stopped.borrow_and_update() {
            let batch = "INSERT INTO events SELECT generateUUIDv4(), 'live_event', 1, concat('live-', toString(number)), '{}', now(), now()
                 FROM numbers(1000)";
            // An insert that meets the rename waits for it and lands in whichever table is `events` then.
            inserter_engine.clickhouse().client().query(batch).execute().await.expect("live insert");
            batches += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        batches
    });
    let _runner = spawn_runner(&engine);
    start(&engine, json!({ "max_threads": 1, "verify_checksums": true })).await;
    let done = settled(&engine).await;
    stop_inserting.send(true).unwrap();
    let batches = inserter.await.unwrap();
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(NAME).await);
    assert!(batches >= 5, "the inserter ran only {batches} batches during the migration");

    let rows: u64 = engine.clickhouse().client().query("SELECT count() FROM events").fetch_one().await.unwrap();
    assert_eq!(rows, seeded_rows + batches * 1000, "every live insert is in the new table");
    let live_uuids_in_new: u64 =
        engine.clickhouse().client().query("SELECT uniqExact(uuid) FROM events WHERE event = 'live_event'").fetch_one().await.unwrap();
    assert_eq!(live_uuids_in_new, batches * 1000, "no live row lost or doubled");
}

#[tokio::test]
async fn stop_and_rollback_mid_copy_restores_the_original_untouched() {
    let (engine, original) = seeded(2_000_000).await;
    let original_keys = table_keys(&engine, "events").await;
    let _runner = spawn_runner(&engine);
    start(&engine, json!({ "max_threads": 1 })).await;
    wait_for(&engine, NAME, Duration::from_secs(60), "copying", |overview| {
        overview.record.current_operation_index == 1 && overview.record.checkpoint.is_some()
    })
    .await;
    engine.stop(NAME, TESTER, true).await.unwrap();
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::RolledBack, "{:?}", engine.errors(NAME).await);
    assert_eq!(events_partition_checksums(engine.clickhouse(), "events").await.unwrap(), original);
    assert_eq!(table_keys(&engine, "events").await, original_keys);
    assert_eq!(table_names(&engine).await, ["events", "person"]);
}

#[tokio::test]
async fn an_instance_created_with_the_new_schema_does_not_need_it() {
    let config = engine::testing::fresh_databases().await;
    let engine = Engine::connect(&config, vec![events_sort_key::definition()]).await.unwrap();
    engine
        .clickhouse()
        .client()
        .query(
            "CREATE TABLE events (uuid UUID, event String, team_id Int64, distinct_id String, properties String,
             timestamp DateTime, created_at DateTime) ENGINE = MergeTree PARTITION BY toYYYYMM(timestamp)
             ORDER BY (team_id, toDate(timestamp), event, cityHash64(distinct_id), uuid)
             SAMPLE BY cityHash64(distinct_id)",
        )
        .execute()
        .await
        .unwrap();
    engine.complete_not_required().await.unwrap();
    let record = engine.migration(NAME).await.unwrap().record;
    assert_eq!(record.status, Status::Completed);
    assert!(record.started_at.is_none(), "it never ran");
}
