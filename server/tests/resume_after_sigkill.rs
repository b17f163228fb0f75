//! A runner process killed with SIGKILL in the middle of 0001_events_sort_key's copy: another runner marks
//! the migration errored once the lease times out, and a resume continues from the checkpoint to data
//! identical to a clean run.

use std::process::{Command, Stdio};
use std::time::Duration;

use demo::migrations::events_sort_key::{self, NAME};
use demo::{events_partition_checksums, seed, SeedRequest};
use engine::status::Status;
use engine::testing::{is_settled, spawn_runner, table_names, wait_for};
use engine::Engine;

const TESTER: &str = "tester@example.com";

async fn settled(engine: &Engine) -> engine::MigrationOverview {
    wait_for(engine, NAME, Duration::from_secs(120), "settled", is_settled).await
}

#[tokio::test]
async fn a_runner_killed_mid_copy_is_resumed_from_its_checkpoint_to_the_same_result() {
    let mut config = engine::testing::fresh_databases().await;
    config.lease_timeout = Duration::from_secs(2);
    let engine = Engine::connect(&config, vec![events_sort_key::definition()]).await.expect("connect");
    seed(engine.clickhouse(), &SeedRequest::new(2_000_000)).await.expect("seed");
    let original = events_partition_checksums(engine.clickhouse(), "events").await.unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_amigo"))
        .args(["migrations", "start", NAME, "--param", "max_threads=1", "--wait"])
        .env("AMIGO_DATABASE_URL", &config.database_url)
        .env("AMIGO_CLICKHOUSE_URL", &config.clickhouse_url)
        .env("AMIGO_CLICKHOUSE_DATABASE", &config.clickhouse_database)
        .env("AMIGO_LEASE_TIMEOUT_SECONDS", "2")
        .env("AMIGO_DEMO", "on")
        .env("AMIGO_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn amigo");
    let copying = wait_for(&engine, NAME, Duration::from_secs(60), "two partitions copied", |overview| {
        overview.record.checkpoint.as_ref().and_then(|checkpoint| checkpoint["copied"].as_array()).is_some_and(|copied| copied.len() >= 2)
    })
    .await;
    // SIGKILL: no chance to record anything.
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let dead_runner = copying.record.runner_id.clone().unwrap();

    let _runner = spawn_runner(&engine);
    let errored = settled(&engine).await;
    assert_eq!(errored.record.status, Status::Errored);
    assert_eq!(errored.record.current_operation_index, 1);
    let copied_before = errored.record.checkpoint.as_ref().unwrap()["copied"].as_array().unwrap().len();
    assert!(copied_before >= 2);
    let errors = engine.errors(NAME).await.unwrap();
    assert_eq!(errors.last().unwrap().message, format!("runner {dead_runner} died during operation 1; resume it, or roll it back"));

    engine.resume(NAME, TESTER).await.unwrap();
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(NAME).await);
    assert_eq!(events_partition_checksums(engine.clickhouse(), "events").await.unwrap(), original, "identical to a clean run");
    assert_eq!(table_names(&engine).await, ["events", "events_0001_backup", "person"]);
}
