//! The *rewrite a table* recipe on tables shaped unlike the demo's `events`, on the server `AMIGO_CLICKHOUSE_URL`
//! names (ClickHouse 18.16 with an Ordinary database, or 26.9 with an Atomic one):
//!
//! - `orders`: daily partitions, `ReplacingMergeTree(version)`, a TTL and a skip index where the server has them,
//!   fed by a materialized view from `orders_source`, rewritten to a new sort key while rows keep arriving through
//!   the view: a full run, a stop then a resume, a rollback after the swap. Each time every row the product's
//!   inserts were acknowledged for is in `orders` once. This one is a migration file (`tests/migrations/orders/`),
//!   the others are written in Rust with the recipe's API. Merges are stopped on both tables, so that a duplicate
//!   cannot be merged away before it is counted.
//! - `sessions`, one partition (`tuple()`), with a `MATERIALIZED` column whose values the copy keeps;
//! - `visits`, partitioned by `(team_id, toYYYYMM(ts))`, with a projection where the server has them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::definition::{nothing_to_undo, MigrationDefinition, Operation};
use engine::recipes::partition_copy::CopyCheckpoint;
use engine::recipes::rewrite_table::RewriteTable;
use engine::status::{Action, Phase, Status};
use engine::tables::{partition_filter, partition_row_counts};
use engine::testing::{is_settled, spawn_runner, table_names, wait_for};
use engine::{Engine, Error};
use serde_json::json;

const TESTER: &str = "tester@example.com";
const ORDERS: &str = "test_rewrite_orders";
/// Rows seeded into `orders` (through its view), over 30 days.
const SEEDED_ORDERS: u64 = 30_000;
/// Rows per insert of the product.
const BATCH_ROWS: u64 = 100;

/// `orders` sorted by team and day instead of by id, as a migration file: `tests/migrations/orders/`, read the
/// way `AMIGO_MIGRATIONS_DIR` is.
fn orders_migration() -> MigrationDefinition {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/migrations/orders");
    let mut loaded = engine::loader::load_folder(&folder, &[]).unwrap_or_else(|error| panic!("{}: {error}", folder.display()));
    assert_eq!(loaded.len(), 1);
    let migration = loaded.remove(0);
    assert_eq!((migration.name.as_str(), migration.description.as_str()), (ORDERS, "Sort orders by team and day"));
    migration
}

/// An engine on fresh databases with `definitions`. Its runner is spawned once the tables exist: a runner that
/// starts finds a migration whose table is missing not required, and completes it.
async fn connected(definitions: Vec<MigrationDefinition>) -> Engine {
    let mut config = engine::testing::fresh_databases().await;
    config.lease_timeout = Duration::from_secs(2);
    Engine::connect(&config, definitions).await.expect("connect")
}

/// An engine with the orders migration over seeded `orders`, a runner, and `orders`' definition before it.
async fn seeded_orders_with_a_runner() -> (Engine, tokio::sync::watch::Sender<bool>, (String, String)) {
    let engine = connected(vec![orders_migration()]).await;
    seed_orders(&engine).await;
    let runner = spawn_runner(&engine);
    let original = definition_of(&engine, "orders").await;
    (engine, runner, original)
}

async fn execute(engine: &Engine, sql: &str) {
    engine.clickhouse().client().query(sql).execute().await.unwrap_or_else(|error| panic!("{sql}: {error}"));
}

async fn count(engine: &Engine, sql: &str) -> u64 {
    engine.clickhouse().client().query(sql).fetch_one().await.unwrap_or_else(|error| panic!("{sql}: {error}"))
}

/// The storage definition and the full `CREATE` statement of `table`.
async fn definition_of(engine: &Engine, table: &str) -> (String, String) {
    engine
        .clickhouse()
        .client()
        .query("SELECT engine_full, create_table_query FROM system.tables WHERE database = currentDatabase() AND name = ?")
        .bind(table)
        .fetch_one()
        .await
        .unwrap()
}

/// `orders` with `SEEDED_ORDERS` rows over 30 days, all written through `orders_view` from `orders_source`;
/// merges stopped on it.
async fn seed_orders(engine: &Engine) {
    let capabilities = engine.clickhouse().capabilities();
    let index = if capabilities.skip_indexes() { ", INDEX amount_index amount TYPE minmax GRANULARITY 4" } else { "" };
    let ttl = if capabilities.table_ttl() { " TTL day + INTERVAL 10 YEAR" } else { "" };
    execute(
        engine,
        &format!(
            "CREATE TABLE orders (team_id UInt32, id UInt64, day Date, amount Float64, version UInt32, note String DEFAULT 'none'{index})
             ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMMDD(day) ORDER BY id{ttl} SETTINGS index_granularity = 1024"
        ),
    )
    .await;
    execute(
        engine,
        "CREATE TABLE orders_source (team_id UInt32, id UInt64, day Date, amount Float64, version UInt32) ENGINE = MergeTree ORDER BY id",
    )
    .await;
    execute(
        engine,
        "CREATE MATERIALIZED VIEW orders_view TO orders AS
         SELECT team_id, id, day, amount, version, concat('via the view, team ', toString(team_id)) AS note FROM orders_source",
    )
    .await;
    execute(engine, "SYSTEM STOP MERGES orders").await;
    execute(
        engine,
        &format!(
            "INSERT INTO orders_source SELECT number % 5, number, today() - number % 30, number / 10, 1 FROM numbers({SEEDED_ORDERS})"
        ),
    )
    .await;
}

/// What the product's inserters saw.
#[derive(Default)]
struct Inserts {
    acknowledged_rows: AtomicU64,
    failed: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

/// The product inserting into `orders_source` (and so, through the view, into `orders`) until told to stop: a
/// batch of `BATCH_ROWS` new orders every 200 ms, one of them a new version of a seeded order of today; and a
/// batch that takes half a second (`sleep`), so that one is nearly always in flight when the names swap.
struct Product {
    inserts: Arc<Inserts>,
    stop: Arc<AtomicBool>,
    inserters: Vec<tokio::task::JoinHandle<()>>,
}

impl Product {
    fn start(engine: &Engine) -> Product {
        let (inserts, stop) = (Arc::new(Inserts::default()), Arc::new(AtomicBool::new(false)));
        let inserters = [false, true]
            .into_iter()
            .map(|slow| {
                let (client, inserts, stop) = (engine.clickhouse().client().clone(), inserts.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut batch = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let sql = if slow {
                            let first = 20_000_000 + batch * BATCH_ROWS;
                            format!(
                                "INSERT INTO orders_source SELECT 9, {first} + number, today(), 1, 1 FROM numbers({BATCH_ROWS}) WHERE sleep(0.5) = 0"
                            )
                        } else {
                            let first = 10_000_000 + batch * BATCH_ROWS;
                            let mut rows: Vec<String> = (1..BATCH_ROWS).map(|row| format!("(7, {}, today(), 2, 1)", first + row)).collect();
                            // A seeded order of today (ids that are multiples of 30), in a new version.
                            rows.push(format!("(7, {}, today(), 3, {})", 30 * (batch % 1000), 2 + batch));
                            format!("INSERT INTO orders_source VALUES {}", rows.join(", "))
                        };
                        match client.query(&sql).execute().await {
                            Ok(()) => {
                                inserts.acknowledged_rows.fetch_add(BATCH_ROWS, Ordering::Relaxed);
                            }
                            Err(error) => {
                                inserts.failed.fetch_add(1, Ordering::Relaxed);
                                inserts.first_failure.lock().unwrap().get_or_insert_with(|| error.to_string());
                            }
                        }
                        batch += 1;
                        tokio::time::sleep(Duration::from_millis(if slow { 10 } else { 200 })).await;
                    }
                })
            })
            .collect();
        Product { inserts, stop, inserters }
    }

    /// Stops inserting and returns how many rows were acknowledged, after checking that no insert failed.
    async fn stop(self) -> u64 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.stop.store(true, Ordering::Relaxed);
        for inserter in self.inserters {
            inserter.await.unwrap();
        }
        assert_eq!(self.inserts.failed.load(Ordering::Relaxed), 0, "an insert failed: {:?}", self.inserts.first_failure.lock().unwrap());
        self.inserts.acknowledged_rows.load(Ordering::Relaxed)
    }
}

/// Stops merges on the recipe's new table as soon as it exists (before the copy reaches today's partition, the
/// last), so that no duplicate it receives can be merged away.
fn stop_merges_on_the_copy(engine: &Engine) -> tokio::task::JoinHandle<()> {
    let client = engine.clickhouse().client().clone();
    tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let exists: u64 = client
                .query("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'orders_rewrite_new'")
                .fetch_one()
                .await
                .unwrap();
            if exists > 0 {
                client.query("SYSTEM STOP MERGES orders_rewrite_new").execute().await.unwrap();
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("orders_rewrite_new never appeared");
    })
}

/// Every row the product was acknowledged for is in `orders` once: as many rows as `orders_source` (each of its
/// rows went through the view), each (id, version) once.
async fn assert_every_acknowledged_row_once(engine: &Engine, acknowledged: u64) {
    let source = count(engine, "SELECT count() FROM orders_source").await;
    assert_eq!(source, SEEDED_ORDERS + acknowledged, "orders_source holds every acknowledged row");
    let (rows, identities): (u64, u64) =
        engine.clickhouse().client().query("SELECT count(), uniqExact(id, version) FROM orders").fetch_one().await.unwrap();
    assert_eq!(rows, source, "every row written through the view is in orders");
    assert_eq!(identities, rows, "none twice");
}

/// After a completed rewrite: `orders` is the rebuilt table, keeping everything but its sort key (engine and
/// version parameter, TTL, index, settings), the original is the backup, and the view writes into the new one.
async fn assert_rewritten(engine: &Engine, original: &(String, String)) {
    let (engine_full, create_query) = definition_of(engine, "orders").await;
    assert_eq!(engine_full, original.0.replace("ORDER BY id", "ORDER BY (team_id, day, id)"));
    assert_eq!(create_query, original.1.replace("ORDER BY id", "ORDER BY (team_id, day, id)"));
    assert!(
        engine_full.starts_with("ReplacingMergeTree(version) PARTITION BY toYYYYMMDD(day) ORDER BY (team_id, day, id)"),
        "{engine_full}"
    );
    let capabilities = engine.clickhouse().capabilities();
    assert_eq!(engine_full.contains(" TTL day + "), capabilities.table_ttl(), "{engine_full}");
    assert_eq!(create_query.contains("INDEX amount_index amount TYPE minmax GRANULARITY 4"), capabilities.skip_indexes(), "{create_query}");
    assert_eq!(
        definition_of(engine, "orders_rewrite_backup").await,
        (original.0.clone(), original.1.replace("orders", "orders_rewrite_backup"))
    );
    assert_eq!(table_names(engine).await, ["orders", "orders_rewrite_backup", "orders_source", "orders_view"]);
    let before = count(engine, "SELECT count() FROM orders").await;
    execute(engine, "INSERT INTO orders_source VALUES (1, 99999999, today(), 0, 1)").await;
    assert_eq!(count(engine, "SELECT count() FROM orders").await, before + 1, "the view writes into the new orders");
}

/// Waits until the orders migration settles, stops the product, and checks it completed with every acknowledged
/// row once in the rewritten `orders`.
async fn assert_completed_whole(
    engine: &Engine,
    product: Product,
    merges_stopped: tokio::task::JoinHandle<()>,
    original: &(String, String),
) {
    let done = settled(engine, ORDERS).await;
    let acknowledged = product.stop().await;
    merges_stopped.await.unwrap();
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(ORDERS).await);
    assert_every_acknowledged_row_once(engine, acknowledged).await;
    assert_rewritten(engine, original).await;
}

async fn settled(engine: &Engine, name: &str) -> engine::MigrationOverview {
    wait_for(engine, name, Duration::from_secs(180), "settled", is_settled).await
}

fn copied_partitions(overview: &engine::MigrationOverview) -> usize {
    overview.record.checkpoint.as_ref().and_then(|checkpoint| checkpoint["copied"].as_array()).map_or(0, Vec::len)
}

#[tokio::test]
async fn a_replacing_table_fed_by_a_view_is_rewritten_while_rows_keep_arriving_through_it() {
    let (engine, _runner, original) = seeded_orders_with_a_runner().await;
    let product = Product::start(&engine);
    let merges_stopped = stop_merges_on_the_copy(&engine);
    let started = Instant::now();
    engine.start(ORDERS, TESTER, json!({ "max_threads": 1 }).as_object().unwrap()).await.unwrap();
    let done = settled(&engine, ORDERS).await;
    eprintln!("orders rewritten in {:.1} s", started.elapsed().as_secs_f64());
    let acknowledged = product.stop().await;
    merges_stopped.await.unwrap();
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(ORDERS).await);
    assert!(acknowledged >= 10 * BATCH_ROWS, "the product inserted only {acknowledged} rows during the run");
    assert_every_acknowledged_row_once(&engine, acknowledged).await;
    assert_rewritten(&engine, &original).await;
}

#[tokio::test]
async fn a_stopped_rewrite_resumes_from_its_checkpoint_while_rows_keep_arriving() {
    let (engine, _runner, original) = seeded_orders_with_a_runner().await;
    let planned = plan_of_orders(&engine).await;
    assert_planned_before_any_copy(&engine, &planned).await;
    let product = Product::start(&engine);
    let merges_stopped = stop_merges_on_the_copy(&engine);
    engine.start(ORDERS, TESTER, json!({ "max_threads": 1 }).as_object().unwrap()).await.unwrap();
    wait_for(&engine, ORDERS, Duration::from_secs(60), "three partitions copied", |overview| copied_partitions(overview) >= 3).await;
    engine.stop(ORDERS, TESTER, false).await.unwrap();
    let stopped = settled(&engine, ORDERS).await;
    assert_eq!(stopped.record.status, Status::Errored);
    assert_eq!(stopped.record.current_operation_index, 1, "stopped during the copy");
    let copied_before = copied_partitions(&stopped);
    let detail = engine.detail(ORDERS).await.unwrap();
    assert_eq!(detail.partitions.len(), 30, "the copy lists every partition: {:?}", detail.partitions);
    let done_before = detail.partitions.iter().filter(|partition| partition.done_at.is_some()).count();
    // A partition is marked done as soon as it is copied, and its checkpoint is saved next: a stop between the two
    // leaves one partition done that the resume copies again.
    assert!((copied_before..=copied_before + 1).contains(&done_before), "{done_before} done, {copied_before} in the checkpoint");
    assert!(detail.partitions.iter().all(|partition| partition.operation_index == 1 && partition.shard == 0));
    assert_eq!(attempt_outcomes(&detail), [("start", 0, Some(("errored", 1)))]);

    engine.resume(ORDERS, TESTER).await.unwrap();
    let done = settled(&engine, ORDERS).await;
    let acknowledged = product.stop().await;
    merges_stopped.await.unwrap();
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(ORDERS).await);
    assert!((3..30).contains(&copied_before), "stopped after {copied_before} of 30 partitions");
    assert_every_acknowledged_row_once(&engine, acknowledged).await;
    assert_rewritten(&engine, &original).await;
    let detail = engine.detail(ORDERS).await.unwrap();
    assert!(detail.partitions.iter().filter(|partition| partition.operation_index == 1).all(|partition| partition.done_at.is_some()));
    assert_eq!(attempt_outcomes(&detail), [("resume", 1, Some(("completed", 4))), ("start", 0, Some(("errored", 1)))]);
    let measured = plan_of_orders(&engine).await;
    let speed = measured.measured_bytes_per_second.expect("the copies measured their speed");
    assert!(speed > 0.0);
    assert_eq!(measured.estimated_seconds, Some(measured.copied_bytes as f64 / speed), "{}", measured.duration_text());
}

/// The checkpoint of the orders copy, as the recipe saves it.
fn copy_checkpoint(overview: &engine::MigrationOverview) -> CopyCheckpoint {
    overview.record.checkpoint.clone().map(|checkpoint| serde_json::from_value(checkpoint).unwrap()).unwrap_or_default()
}

#[tokio::test]
async fn large_partitions_are_copied_in_slices_on_two_streams_and_a_resume_redoes_only_the_slices_in_flight() {
    let (engine, _runner, original) = seeded_orders_with_a_runner().await;
    let product = Product::start(&engine);
    let merges_stopped = stop_merges_on_the_copy(&engine);
    let parameters = json!({ "max_threads": 1, "parallelism": 2, "slice_rows": 300 });
    engine.start(ORDERS, TESTER, parameters.as_object().unwrap()).await.unwrap();
    wait_for(&engine, ORDERS, Duration::from_secs(60), "two partitions and a slice of a third copied", |overview| {
        let copy = copy_checkpoint(overview);
        copy.copied.len() >= 2 && copy.slices.values().any(|sliced| !sliced.done.is_empty())
    })
    .await;
    engine.stop(ORDERS, TESTER, false).await.unwrap();
    let stopped = settled(&engine, ORDERS).await;
    assert_eq!((stopped.record.status, stopped.record.current_operation_index), (Status::Errored, 1), "stopped during the copy");
    let mut copy = copy_checkpoint(&stopped);
    // 1,000 rows a partition in slices of at most 300: four ranges of `id`, the original's first sort-key element
    // (more in today's, which the product's inserts fill).
    for sliced in copy.slices.values() {
        assert_eq!(sliced.key, "id");
        assert!(sliced.bounds.len() >= 3, "{sliced:?}");
    }
    let in_flight: usize = copy.slices.values().map(|sliced| sliced.in_flight.len()).sum();
    assert!(in_flight <= 2, "at most one slice in flight per stream: {copy:?}");
    // As if the runner had been killed between a slice's attach and the checkpoint that records it: the resume must
    // find that slice in the new table rather than attach it twice.
    let sliced = copy.slices.values_mut().find(|sliced| !sliced.done.is_empty()).expect("a partition partly copied");
    let attached = *sliced.done.iter().next().unwrap();
    sliced.done.remove(&attached);
    sliced.in_flight.insert(attached);
    sqlx::query("UPDATE async_migration SET checkpoint = $1 WHERE name = $2")
        .bind(serde_json::to_value(&copy).unwrap())
        .bind(ORDERS)
        .execute(engine.store().pool())
        .await
        .unwrap();

    engine.resume(ORDERS, TESTER).await.unwrap();
    assert_completed_whole(&engine, product, merges_stopped, &original).await;
}

#[tokio::test]
async fn a_paused_rewrite_holds_between_partitions_then_continues_while_rows_keep_arriving() {
    let (engine, _runner, original) = seeded_orders_with_a_runner().await;
    let product = Product::start(&engine);
    let merges_stopped = stop_merges_on_the_copy(&engine);
    engine.start(ORDERS, TESTER, json!({ "max_threads": 1 }).as_object().unwrap()).await.unwrap();
    wait_for(&engine, ORDERS, Duration::from_secs(60), "a partition copied", |overview| copied_partitions(overview) >= 1).await;

    let pausing = engine.pause(ORDERS, TESTER).await.unwrap();
    assert_eq!((pausing.phase, pausing.record.pause_requested_by.as_deref()), (Phase::Pausing, Some(TESTER)));
    let again = engine.pause(ORDERS, TESTER).await.unwrap_err();
    assert_eq!(
        again.to_string(),
        format!("cannot pause {ORDERS}: it is pausing, and pause needs it to be queued, starting, running, waiting or ready to cut over")
    );
    let paused = wait_for(&engine, ORDERS, Duration::from_secs(60), "paused", |overview| overview.phase == Phase::Paused).await;
    assert_eq!(paused.allowed_actions, [Action::Continue, Action::Adjust, Action::Stop, Action::StopAndRollback]);
    assert_eq!(paused.record.status, Status::Running);
    assert_eq!(paused.record.current_operation_index, 1, "held within the copy");
    let held_at = copied_partitions(&paused);
    assert!(held_at < 30, "held after {held_at} of 30 partitions");
    // Held: nothing of amigo's runs on ClickHouse, the checkpoint does not move, and the runner keeps its lease.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = engine.migration(ORDERS).await.unwrap();
    assert_eq!((still.phase, copied_partitions(&still), still.record.runner_id.clone()), (Phase::Paused, held_at, paused.record.runner_id));
    assert!(still.record.heartbeat_age_seconds.is_some_and(|age| age < 2.0), "heartbeats go on: {:?}", still.record.heartbeat_age_seconds);
    let running: Vec<(String, String)> = engine
        .clickhouse()
        .client()
        .query(&format!(
            "SELECT query_id, query FROM system.processes WHERE query_id LIKE 'amigo-{ORDERS}-%' AND position(query, currentDatabase()) > 0"
        ))
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(running, [], "no statement of the migration runs while it is paused");

    let continued = engine.continue_run(ORDERS, TESTER).await.unwrap();
    assert_eq!((continued.phase, continued.record.pause_requested_by), (Phase::Running, None));
    assert_completed_whole(&engine, product, merges_stopped, &original).await;
    let actions: Vec<String> = engine.audit_log(10).await.unwrap().into_iter().rev().map(|entry| entry.action).collect();
    assert_eq!(actions[..3], ["start", "pause", "continue"], "{actions:?}");
    let detail = engine.detail(ORDERS).await.unwrap();
    assert_eq!(attempt_outcomes(&detail), [("start", 0, Some(("completed", 4)))], "a pause is no new attempt");
}

#[tokio::test]
async fn a_rewrite_held_ready_to_cut_over_keeps_copying_new_rows_until_staff_cut_over() {
    let (engine, _runner, original) = seeded_orders_with_a_runner().await;
    let product = Product::start(&engine);
    let merges_stopped = stop_merges_on_the_copy(&engine);
    engine.start(ORDERS, TESTER, json!({ "max_threads": 1, "hold_cutover": true }).as_object().unwrap()).await.unwrap();
    let ready =
        wait_for(&engine, ORDERS, Duration::from_secs(120), "ready to cut over", |overview| overview.phase == Phase::ReadyToCutOver).await;
    assert_eq!(ready.record.current_operation_index, 2, "held after the catch-up, before the swap");
    assert_eq!(ready.allowed_actions, [Action::CutOver, Action::Pause, Action::Adjust, Action::Stop, Action::StopAndRollback]);
    assert!(ready.record.cutover_ready_since.is_some());

    // Still the product's table, and what it receives now reaches the copy without anyone's help.
    execute(&engine, "INSERT INTO orders_source VALUES (4, 77777777, today(), 1, 1)").await;
    let copied = "SELECT count() FROM orders_rewrite_new WHERE id = 77777777";
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&engine, copied).await == 0 {
        assert!(Instant::now() < deadline, "a row inserted while ready to cut over never reached the new table");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let still = engine.migration(ORDERS).await.unwrap();
    assert_eq!((still.phase, table_names(&engine).await.contains(&"orders_rewrite_backup".to_string())), (Phase::ReadyToCutOver, false));

    let approved = engine.cut_over(ORDERS, TESTER).await.unwrap();
    assert_eq!(approved.record.cutover_approved_by.as_deref(), Some(TESTER));
    let twice = engine.cut_over(ORDERS, TESTER).await.unwrap_err();
    assert!(matches!(twice, Error::IllegalAction(_)), "{twice}");
    let done = settled(&engine, ORDERS).await;
    let acknowledged = product.stop().await;
    merges_stopped.await.unwrap();
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(ORDERS).await);
    assert_eq!((done.record.cutover_ready_since, done.record.cutover_approved_by), (None, None));
    assert_every_acknowledged_row_once(&engine, acknowledged + 1).await;
    assert_rewritten(&engine, &original).await;
    let actions: Vec<String> = engine.audit_log(10).await.unwrap().into_iter().rev().map(|entry| entry.action).collect();
    assert_eq!(actions[..2], ["start", "cut over"], "{actions:?}");
}

#[tokio::test]
async fn a_completed_rewrite_rolls_back_from_its_backup_and_a_finalized_one_drops_it() {
    let (engine, _runner, original) = seeded_orders_with_a_runner().await;
    engine.start(ORDERS, TESTER, &serde_json::Map::new()).await.unwrap();
    let done = settled(&engine, ORDERS).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(ORDERS).await);
    assert_eq!(done.record.backup_table.as_deref(), Some("orders_rewrite_backup"));
    assert!(done.record.backup_since.is_some() && done.record.backup_bytes.is_some_and(|bytes| bytes > 0), "{:?}", done.record);
    assert_eq!(done.allowed_actions, [Action::Rollback, Action::Finalize]);

    // Rolled back after completion: the original is the product's table again, as it was, and no backup is left.
    engine.rollback(ORDERS, TESTER).await.unwrap();
    let rolled_back = settled(&engine, ORDERS).await;
    assert_eq!(rolled_back.record.status, Status::RolledBack, "{:?}", engine.errors(ORDERS).await);
    assert_eq!(rolled_back.record.backup_table, None);
    assert_eq!(definition_of(&engine, "orders").await, original);
    assert_eq!(table_names(&engine).await, ["orders", "orders_source", "orders_view"]);
    assert_eq!(count(&engine, "SELECT count() FROM orders").await, SEEDED_ORDERS);

    // Run again, then finalized: the backup is dropped, and nothing is left to roll back from.
    engine.start(ORDERS, TESTER, &serde_json::Map::new()).await.unwrap();
    assert_eq!(settled(&engine, ORDERS).await.record.status, Status::Completed);
    let finalized = engine.finalize(ORDERS, TESTER).await.unwrap();
    assert_eq!((finalized.record.backup_table.as_deref(), finalized.allowed_actions.as_slice()), (None, &[][..]));
    assert_eq!(table_names(&engine).await, ["orders", "orders_source", "orders_view"]);
    let refused = engine.rollback(ORDERS, TESTER).await.unwrap_err();
    assert_eq!(refused.to_string(), format!("cannot roll back {ORDERS}: it completed and no backup of what it replaced is kept"));
    let audit = engine.audit_log(10).await.unwrap();
    let finalize = audit.iter().find(|entry| entry.action == "finalize").expect("audited");
    assert_eq!(finalize.parameters["dropped"], "orders_rewrite_backup");
    assert!(finalize.parameters["freed_bytes"].as_i64().is_some_and(|bytes| bytes > 0), "{:?}", finalize.parameters);
    let again = engine.finalize(ORDERS, TESTER).await.unwrap_err();
    assert!(matches!(again, Error::IllegalAction(_)), "{again}");
}

/// The plan of the orders rewrite with its defaults.
async fn plan_of_orders(engine: &Engine) -> engine::plan::Plan {
    engine.plan(ORDERS, engine.parameters_from_json(ORDERS, &serde_json::Map::new()).unwrap()).await.unwrap()
}

/// A plan made before any copy on this instance: the statements of the recipe expanded, each of the 30
/// partitions dropped then copied; the table's partitions, rows and bytes; the duration unknown; nothing changed.
async fn assert_planned_before_any_copy(engine: &Engine, plan: &engine::plan::Plan) {
    use engine::plan::PlannedWork;
    let statements = |index: usize| match &plan.operations[index].work {
        PlannedWork::Recipe { statements, .. } => statements.clone(),
        other => panic!("operation {index} is planned as {other:?}"),
    };
    assert!(statements(0)[0].starts_with("CREATE TABLE IF NOT EXISTS "), "{:?}", statements(0));
    assert!(statements(0)[0].contains("ORDER BY (team_id, day, id)"), "{:?}", statements(0));
    let copy = statements(1);
    assert_eq!(copy.len(), 60, "a drop and a copy per partition: {:?}", plan.operations[1]);
    assert!(copy[0].contains("DROP PARTITION ID") && copy[1].starts_with("INSERT INTO "), "{copy:?}");
    let table = &plan.tables[0];
    assert_eq!((table.table.as_str(), table.partitions, table.rows), ("orders", 30, SEEDED_ORDERS));
    assert!(table.bytes > 0 && plan.disk_needed >= table.bytes && plan.copied_bytes >= table.bytes, "{plan:?}");
    assert_eq!(plan.disk_free.is_some(), engine.clickhouse().capabilities().reports_disks());
    assert_eq!(plan.estimated_seconds, None);
    assert!(plan.duration_text().starts_with("unknown: this instance has not copied a partition yet"), "{}", plan.duration_text());
    assert_eq!(table_names(engine).await, ["orders", "orders_source", "orders_view"], "a plan changes nothing");
}

/// An attempt's action, first operation and (outcome, operation) where it ended, 0-based.
type AttemptOutcome<'a> = (&'a str, i32, Option<(&'a str, i32)>);

/// Each attempt's [`AttemptOutcome`], newest first.
fn attempt_outcomes(detail: &engine::MigrationDetail) -> Vec<AttemptOutcome<'_>> {
    detail
        .attempts
        .iter()
        .map(|attempt| (attempt.action.as_str(), attempt.from_operation, attempt.outcome.as_deref().zip(attempt.at_operation)))
        .collect()
}

#[tokio::test]
async fn a_rewrite_rolled_back_after_the_swap_gives_back_the_original_with_every_row() {
    // The rewrite, then an operation that fails a second after the swap: the runner rolls everything back.
    let failing = orders_migration().operation(Operation::rust(
        "fail a second after the swap",
        |_| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Err(Error::Migration("failing on purpose after the swap".into()))
        },
        nothing_to_undo,
    ));
    let engine = connected(vec![failing]).await;
    seed_orders(&engine).await;
    let _runner = spawn_runner(&engine);
    let original = definition_of(&engine, "orders").await;
    let product = Product::start(&engine);
    let merges_stopped = stop_merges_on_the_copy(&engine);
    engine.start(ORDERS, TESTER, json!({}).as_object().unwrap()).await.unwrap();
    let done = settled(&engine, ORDERS).await;
    let acknowledged = product.stop().await;
    merges_stopped.await.unwrap();
    assert_eq!(done.record.status, Status::RolledBack, "{:?}", engine.errors(ORDERS).await);
    let errors = engine.errors(ORDERS).await.unwrap();
    assert_eq!(errors.len(), 1, "only the failure on purpose: {errors:?}");
    assert_eq!(errors[0].message, "operation 5 failed: failing on purpose after the swap");
    assert_eq!(definition_of(&engine, "orders").await, original, "the original is back");
    assert_eq!(table_names(&engine).await, ["orders", "orders_source", "orders_view"]);
    assert_every_acknowledged_row_once(&engine, acknowledged).await;
}

#[tokio::test]
async fn a_table_with_one_partition_keeps_its_materialized_values() {
    let sessions = RewriteTable {
        table: "sessions".into(),
        new_table: "sessions_new".into(),
        backup_table: "sessions_backup".into(),
        order_by: Some("sample_hash, id".into()),
        sample_by: Some("sample_hash".into()),
        row_identity: "id".into(),
        row_checksum: Some("cityHash64(id, user, started, duration, sample_hash)".into()),
        ..RewriteTable::default()
    };
    let engine = connected(vec![sessions.define(MigrationDefinition::new("test_rewrite_sessions", "Sample sessions"))]).await;
    execute(
        &engine,
        "CREATE TABLE sessions (id UInt64, user String, started DateTime, duration UInt32 DEFAULT 60 COMMENT 'seconds',
         sample_hash UInt64 MATERIALIZED rand64()) ENGINE = MergeTree PARTITION BY tuple() ORDER BY id",
    )
    .await;
    execute(&engine, "INSERT INTO sessions (id, user, started) SELECT number, concat('user-', toString(number % 97)), now() - number FROM numbers(20000)")
        .await;
    let _runner = spawn_runner(&engine);
    let hashes = "SELECT sum(cityHash64(id, sample_hash)) FROM sessions";
    let before = count(&engine, hashes).await;
    engine.start("test_rewrite_sessions", TESTER, json!({ "verify_checksums": true }).as_object().unwrap()).await.unwrap();
    let done = settled(&engine, "test_rewrite_sessions").await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors("test_rewrite_sessions").await);
    assert_eq!(count(&engine, hashes).await, before, "the MATERIALIZED values were copied, not computed again");
    assert_eq!(count(&engine, "SELECT count() FROM sessions").await, 20000);
    assert_eq!(partition_row_counts(engine.clickhouse(), "sessions").await.unwrap(), [("all".to_string(), 20000)]);
    let (engine_full, create_query) = definition_of(&engine, "sessions").await;
    assert!(engine_full.starts_with("MergeTree PARTITION BY tuple() ORDER BY (sample_hash, id) SAMPLE BY sample_hash"), "{engine_full}");
    assert!(create_query.contains("COMMENT 'seconds'") && create_query.contains("MATERIALIZED rand64()"), "{create_query}");
    let sampled = count(&engine, "SELECT count() FROM sessions SAMPLE 1/10").await;
    assert!(sampled > 0 && sampled < 20000, "SAMPLE BY works: {sampled}");
}

/// `visits`, partitioned by team and month (3 teams, 12 months), with a projection where the server has them.
async fn seed_visits(engine: &Engine) {
    let projection = if engine.clickhouse().capabilities().projections() {
        ", PROJECTION visits_per_path (SELECT path, count() GROUP BY path)"
    } else {
        ""
    };
    execute(
        engine,
        &format!(
            "CREATE TABLE visits (team_id UInt16, ts DateTime, path String, visitor UUID, duration UInt32{projection})
             ENGINE = MergeTree PARTITION BY (team_id, toYYYYMM(ts)) ORDER BY (team_id, ts) SETTINGS index_granularity = 256"
        ),
    )
    .await;
    execute(
        engine,
        "INSERT INTO visits SELECT number % 3, toDateTime('2024-01-01 00:00:00') + number * 1577, concat('/page/', toString(number % 40)),
         generateUUIDv4(), number % 600 FROM numbers(20000)",
    )
    .await;
}

#[tokio::test]
async fn a_table_partitioned_by_two_columns_gets_a_new_sort_key_and_settings() {
    let visits = RewriteTable {
        table: "visits".into(),
        new_table: "visits_new".into(),
        backup_table: "visits_backup".into(),
        order_by: Some("team_id, path, ts".into()),
        settings: [("index_granularity".to_string(), "512".to_string())].into(),
        row_identity: "visitor".into(),
        ..RewriteTable::default()
    };
    let engine = connected(vec![visits.define(MigrationDefinition::new("test_rewrite_visits", "Sort visits by path"))]).await;
    seed_visits(&engine).await;
    let _runner = spawn_runner(&engine);
    let partitions = partition_row_counts(engine.clickhouse(), "visits").await.unwrap();
    assert_eq!(partitions.len(), 36, "{partitions:?}");
    let (_, original_query) = definition_of(&engine, "visits").await;
    engine.start("test_rewrite_visits", TESTER, json!({}).as_object().unwrap()).await.unwrap();
    let done = settled(&engine, "test_rewrite_visits").await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors("test_rewrite_visits").await);
    assert_eq!(partition_row_counts(engine.clickhouse(), "visits").await.unwrap(), partitions);
    assert_eq!(count(&engine, "SELECT uniqExact(visitor) FROM visits").await, 20000);
    let (engine_full, create_query) = definition_of(&engine, "visits").await;
    assert_eq!(engine_full, "MergeTree PARTITION BY (team_id, toYYYYMM(ts)) ORDER BY (team_id, path, ts) SETTINGS index_granularity = 512");
    assert_eq!(create_query.split(" ENGINE = ").next(), original_query.split(" ENGINE = ").next(), "the columns and projection are kept");
}

#[tokio::test]
async fn a_partition_filter_reads_that_partition_only() {
    let engine = connected(Vec::new()).await;
    seed_visits(&engine).await;
    for (partition_id, rows) in partition_row_counts(engine.clickhouse(), "visits").await.unwrap() {
        let filter = partition_filter(engine.clickhouse(), "visits", &partition_id).await.unwrap();
        // The server counts the rows of the granules (256 rows each) it is about to read.
        let granules = rows.div_ceil(256) * 256;
        let read: u64 = engine
            .clickhouse()
            .client()
            .query(&format!("SELECT count() FROM visits WHERE {filter} AND NOT ignore(path)"))
            .with_setting("max_rows_to_read", granules.to_string())
            .fetch_one()
            .await
            .unwrap_or_else(|error| panic!("{filter} reads more than partition {partition_id}'s {rows} rows: {error}"));
        assert_eq!(read, rows, "{filter}");
    }
}
