//! `amigo worker` as a separate process: it picks up a migration started elsewhere, and a stop issued from
//! another process reaches it (its ClickHouse query killed, the run recorded errored) within a second.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use demo::migrations::events_sort_key::{self, NAME};
use demo::{seed, SeedRequest};
use engine::status::Status;
use engine::testing::wait_for;
use engine::{Engine, EngineConfig};

/// Kills the worker when the test ends, however it ends.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_worker(config: &EngineConfig) -> Worker {
    Worker(
        Command::new(env!("CARGO_BIN_EXE_amigo"))
            .arg("worker")
            .env("AMIGO_DATABASE_URL", &config.database_url)
            .env("AMIGO_CLICKHOUSE_URL", &config.clickhouse_url)
            .env("AMIGO_CLICKHOUSE_DATABASE", &config.clickhouse_database)
            .env("AMIGO_DEMO", "on")
            .env("AMIGO_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn amigo worker"),
    )
}

#[tokio::test]
async fn a_stop_from_another_process_reaches_the_worker_within_a_second() {
    let config = engine::testing::fresh_databases().await;
    let engine = Engine::connect(&config, vec![events_sort_key::definition()]).await.unwrap();
    seed(engine.clickhouse(), &SeedRequest::new(2_000_000)).await.unwrap();
    let _worker = spawn_worker(&config);

    let parameters = serde_json::json!({ "max_threads": 1 });
    engine.start(NAME, "tester", parameters.as_object().unwrap()).await.unwrap();
    let copying = wait_for(&engine, NAME, Duration::from_secs(60), "copying in the worker", |overview| {
        overview.record.current_operation_index == 1 && overview.record.checkpoint.is_some() && !overview.record.current_query_id.is_empty()
    })
    .await;
    assert!(copying.record.runner_id.is_some());

    let stop_requested = Instant::now();
    engine.stop(NAME, "tester", false).await.unwrap();
    let stopped = wait_for(&engine, NAME, Duration::from_secs(1), "errored within a second of the stop", |overview| {
        overview.record.status == Status::Errored && overview.record.runner_id.is_none()
    })
    .await;
    let elapsed = stop_requested.elapsed();
    let running: u64 = engine
        .clickhouse()
        .client()
        .query("SELECT count() FROM system.processes WHERE query_id LIKE 'amigo-0001_events_sort_key-%' AND position(query, ?) > 0")
        .bind(config.clickhouse_database.as_str())
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(running, 0, "the migration's queries on this test's database are gone");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    let errors = engine.errors(NAME).await.unwrap();
    assert_eq!(errors.last().unwrap().message, "stopped by tester during operation 1");
    assert_eq!(stopped.record.current_operation_index, 1, "resumable from the copy");
}
