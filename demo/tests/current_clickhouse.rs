//! The demo's 0001 on the server `AMIGO_CLICKHOUSE_URL` names, for what current releases (Atomic databases)
//! do differently from 18.16: run in both tiers of `scripts/test`.

use std::time::Duration;

use demo::migrations::events_sort_key::{self, NAME};
use demo::{seed, SeedRequest};
use engine::status::Status;
use engine::testing::{is_settled, spawn_runner, table_names, wait_for};
use engine::Engine;
use serde_json::json;

const TESTER: &str = "tester@example.com";

async fn connected() -> Engine {
    let config = engine::testing::fresh_databases().await;
    Engine::connect(&config, vec![events_sort_key::definition()]).await.expect("connect")
}

#[tokio::test]
async fn a_rolled_back_rewrite_leaves_no_dropped_table_behind_and_runs_again_at_once() {
    let engine = connected().await;
    seed(engine.clickhouse(), &SeedRequest::new(300_000)).await.unwrap();
    let _runner = spawn_runner(&engine);
    engine.start(NAME, TESTER, json!({ "max_threads": 1 }).as_object().unwrap()).await.unwrap();
    wait_for(&engine, NAME, Duration::from_secs(60), "copying", |overview| overview.record.checkpoint.is_some()).await;
    engine.stop(NAME, TESTER, true).await.unwrap();
    let rolled_back = wait_for(&engine, NAME, Duration::from_secs(120), "settled", is_settled).await;
    assert_eq!(rolled_back.record.status, Status::RolledBack, "{:?}", engine.errors(NAME).await);
    assert_eq!(table_names(&engine).await, ["events", "person"]);
    if engine.clickhouse().capabilities().exchanges_tables() {
        // In an Atomic database a DROP without SYNC leaves the table in system.dropped_tables for 8 minutes (and a
        // replicated one its ZooKeeper path, which a new run would meet).
        let dropped: u64 = engine
            .clickhouse()
            .client()
            .query("SELECT count() FROM system.dropped_tables WHERE database = currentDatabase()")
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(dropped, 0, "the rollback's drops wait until the table is gone");
    }
    engine.start(NAME, TESTER, json!({}).as_object().unwrap()).await.unwrap();
    let done = wait_for(&engine, NAME, Duration::from_secs(120), "settled", is_settled).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(NAME).await);
}
