//! A product that never stops inserting while 0001_events_sort_key runs through everything a days-long run
//! meets: a runner SIGKILLed mid-copy and the run resumed, stopped and resumed again, then completed. No
//! insert fails, and every acknowledged row is in the new `events` exactly once. On ClickHouse 18.16
//! (Ordinary database: the swap is one `RENAME`) and on a current ClickHouse (Atomic database: `EXCHANGE
//! TABLES`, then a wait for inserts still writing into the original), whichever `AMIGO_CLICKHOUSE_URL` names.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use demo::migrations::events_sort_key::{self, NAME};
use demo::{seed, SeedRequest};
use engine::status::Status;
use engine::testing::{is_settled, spawn_runner, wait_for};
use engine::Engine;

const TESTER: &str = "tester@example.com";
/// Rows per insert of the product.
const BATCH_ROWS: u64 = 200;

/// What the product's inserter saw.
#[derive(Default)]
struct Inserts {
    acknowledged: AtomicU64,
    failed: AtomicU64,
    first_failure: std::sync::Mutex<Option<String>>,
}

/// How the product's inserts look.
#[derive(Clone, Copy)]
enum InsertKind {
    /// Rows sent as data (VALUES), which current servers queue as an async insert and write when it is
    /// flushed; each row's uuid is made of the inserter's number, the batch's and the row's.
    Values,
    /// An `INSERT … SELECT` that takes half a second (`sleep` in its `WHERE`): one is nearly always in flight
    /// when the names swap, and in an Atomic database it ends in the table swapped away.
    Slow,
}

/// Inserts batch after batch into `events` (the current month, which the copy also reads) until `stop`,
/// counting what ClickHouse acknowledged and what failed.
fn insert_all_along(engine: &Engine, kind: InsertKind, inserts: Arc<Inserts>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let client = engine.clickhouse().client().clone();
    tokio::spawn(async move {
        let mut batch = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let columns = "INSERT INTO events (uuid, event, team_id, distinct_id, properties, timestamp, created_at)";
            let sql = match kind {
                InsertKind::Values => {
                    let rows: Vec<String> = (0..BATCH_ROWS)
                        .map(|row| {
                            format!("('00000000-0000-4000-8000-{batch:06}{row:06}', 'live_event', 1, 'live-{batch}-{row}', '{{}}', now(), now())")
                        })
                        .collect();
                    format!("{columns} VALUES {}", rows.join(", "))
                }
                InsertKind::Slow => format!(
                    "{columns} SELECT generateUUIDv4(), 'live_event', 2, concat('slow-{batch}-', toString(number)), '{{}}', now(), now()
                     FROM numbers({BATCH_ROWS}) WHERE sleep(0.5) = 0"
                ),
            };
            match client.query(&sql).execute().await {
                Ok(()) => {
                    inserts.acknowledged.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    inserts.failed.fetch_add(1, Ordering::Relaxed);
                    inserts.first_failure.lock().unwrap().get_or_insert_with(|| error.to_string());
                }
            }
            batch += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

async fn settled(engine: &Engine) -> engine::MigrationOverview {
    wait_for(engine, NAME, Duration::from_secs(300), "settled", is_settled).await
}

fn copied_partitions(overview: &engine::MigrationOverview) -> usize {
    overview.record.checkpoint.as_ref().and_then(|checkpoint| checkpoint["copied"].as_array()).map_or(0, Vec::len)
}

#[tokio::test]
async fn a_product_inserting_all_along_loses_no_row_duplicates_none_and_sees_no_failed_insert() {
    let mut config = engine::testing::fresh_databases().await;
    config.lease_timeout = Duration::from_secs(2);
    let engine = Engine::connect(&config, vec![events_sort_key::definition()]).await.expect("connect");
    seed(engine.clickhouse(), &SeedRequest::new(1_000_000)).await.expect("seed");
    let seeded: u64 = engine.clickhouse().client().query("SELECT count() FROM events").fetch_one().await.unwrap();
    let capabilities = engine.clickhouse().capabilities().clone();

    let inserts = Arc::new(Inserts::default());
    let stop_inserting = Arc::new(AtomicBool::new(false));
    let inserters =
        [InsertKind::Values, InsertKind::Slow].map(|kind| insert_all_along(&engine, kind, inserts.clone(), stop_inserting.clone()));

    // A runner process, SIGKILLed once two partitions are copied.
    let mut child = support::amigo_command(&config, &["migrations", "start", NAME, "--param", "max_threads=1", "--wait"])
        .env("AMIGO_LEASE_TIMEOUT_SECONDS", "2")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn amigo");
    wait_for(&engine, NAME, Duration::from_secs(120), "two partitions copied", |overview| copied_partitions(overview) >= 2).await;
    child.kill().expect("SIGKILL");
    child.wait().unwrap();

    let _runner = spawn_runner(&engine);
    assert_eq!(settled(&engine).await.record.status, Status::Errored, "the dead runner's run is errored");

    // Resumed, then stopped again a few partitions further.
    engine.resume(NAME, TESTER).await.unwrap();
    let copied_at_resume = copied_partitions(&engine.migration(NAME).await.unwrap());
    wait_for(&engine, NAME, Duration::from_secs(120), "more partitions copied", |overview| {
        copied_partitions(overview) > copied_at_resume + 1 || overview.record.current_operation_index > 1
    })
    .await;
    engine.stop(NAME, TESTER, false).await.unwrap();
    assert_eq!(settled(&engine).await.record.status, Status::Errored, "stopped");

    // Resumed to the end, inserts still arriving through the swap.
    engine.resume(NAME, TESTER).await.unwrap();
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(NAME).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_inserting.store(true, Ordering::Relaxed);
    for inserter in inserters {
        inserter.await.unwrap();
    }

    let acknowledged = inserts.acknowledged.load(Ordering::Relaxed);
    let failed = inserts.failed.load(Ordering::Relaxed);
    let (live_rows, live_uuids, other_rows): (u64, u64, u64) = engine
        .clickhouse()
        .client()
        .query("SELECT countIf(event = 'live_event'), uniqExactIf(uuid, event = 'live_event'), countIf(event != 'live_event') FROM events")
        .fetch_one()
        .await
        .unwrap();
    eprintln!(
        "ClickHouse {} ({} database): {acknowledged} inserts of {BATCH_ROWS} rows acknowledged, {failed} failed; \
         {live_rows} live rows in the new events ({live_uuids} distinct), {other_rows} of the {seeded} seeded",
        capabilities.version,
        capabilities.database_engine.name(),
    );
    assert_eq!(failed, 0, "an insert failed: {:?}", inserts.first_failure.lock().unwrap());
    assert!(acknowledged >= 20, "the product inserted only {acknowledged} batches during the run");
    assert_eq!(live_rows, acknowledged * BATCH_ROWS, "every acknowledged row is in the new events");
    assert_eq!(live_uuids, live_rows, "none twice");
    assert_eq!(other_rows, seeded, "the seeded rows are all there, once");
}
