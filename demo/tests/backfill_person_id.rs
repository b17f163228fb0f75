//! 0002_backfill_person_id on a real seeded events table: every event gets its person's id and nothing else
//! changes, rollback restores the original table exactly, stop behaves as documented for the server's version,
//! a run interrupted mid-mutation and resumed ends identical to a clean run, and a new-schema instance does
//! not need it.

use std::time::Duration;

use demo::migrations::backfill_person_id::{self, NAME};
use demo::migrations::events_sort_key;
use demo::{events_partition_checksums, seed, PartitionChecksum, SeedRequest};
use engine::status::Status;
use engine::testing::{is_settled, spawn_runner, wait_for};
use engine::{Engine, MigrationOverview};

const TESTER: &str = "tester@example.com";

/// The events table as it is after 0001 (new sort and sample keys), without person_id.
const EVENTS_AFTER_0001: &str = "CREATE TABLE events (uuid UUID, event String, team_id Int64, distinct_id String, properties String,
     timestamp DateTime('UTC'), created_at DateTime) ENGINE = MergeTree PARTITION BY toYYYYMM(timestamp)
     ORDER BY (team_id, toDate(timestamp), event, cityHash64(distinct_id), uuid) SAMPLE BY cityHash64(distinct_id)";

/// A fresh instance whose events table already has 0001's keys (so 0001 is not needed and counts as completed),
/// seeded with `events` events over a fixed window.
async fn seeded(events: u64) -> Engine {
    let mut config = engine::testing::fresh_databases().await;
    config.lease_timeout = Duration::from_secs(2);
    let engine = Engine::connect(&config, vec![events_sort_key::definition(), backfill_person_id::definition()]).await.expect("connect");
    engine.clickhouse().client().query(EVENTS_AFTER_0001).execute().await.unwrap();
    engine.complete_not_required().await.unwrap();
    assert_eq!(engine.migration(events_sort_key::NAME).await.unwrap().record.status, Status::Completed);
    let request = SeedRequest { until: "2024-06-15T00:00:00Z".parse().unwrap(), ..SeedRequest::new(events) };
    seed(engine.clickhouse(), &request).await.expect("seed");
    engine
}

async fn start(engine: &Engine) {
    engine.start(NAME, TESTER, &serde_json::Map::new()).await.expect("start");
}

async fn settled(engine: &Engine) -> MigrationOverview {
    wait_for(engine, NAME, Duration::from_secs(300), "settled", is_settled).await
}

async fn count(engine: &Engine, query: &str) -> u64 {
    engine.clickhouse().client().query(query).fetch_one().await.unwrap_or_else(|error| panic!("{query}: {error}"))
}

async fn checksums(engine: &Engine) -> Vec<PartitionChecksum> {
    events_partition_checksums(engine.clickhouse(), "events").await.unwrap()
}

/// Names and types of `table`'s columns, in table order (18.16 lists them so; it has no `position`).
async fn columns(engine: &Engine, table: &str) -> Vec<(String, String)> {
    engine
        .clickhouse()
        .client()
        .query("SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = ?")
        .bind(table)
        .fetch_all()
        .await
        .unwrap()
}

async fn tables(engine: &Engine) -> Vec<String> {
    let query = "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name";
    engine.clickhouse().client().query(query).fetch_all().await.unwrap()
}

/// Lookup tables of this instance: next to events, or (old servers) in the server's default database.
async fn lookup_tables(engine: &Engine) -> u64 {
    count(
        engine,
        "SELECT count() FROM system.tables WHERE (database = currentDatabase() AND name = 'person_lookup_0002')
         OR name = concat(currentDatabase(), '_person_lookup_0002')",
    )
    .await
}

/// Events whose person_id is not the id of the person with their (team_id, distinct_id).
async fn wrong_person_ids(engine: &Engine) -> u64 {
    count(
        engine,
        "SELECT count() FROM events ANY LEFT JOIN (SELECT team_id, distinct_id, id FROM person FINAL) AS persons USING (team_id, distinct_id)
         WHERE person_id != id",
    )
    .await
}

/// A hash of every event's uuid with its person_id: equal for two tables with the same ids on the same events.
async fn person_id_checksum(engine: &Engine) -> u64 {
    count(engine, "SELECT sum(cityHash64(toString(uuid), toString(person_id))) FROM events").await
}

/// This migration's mutations of events: (id, done).
async fn own_mutations(engine: &Engine) -> Vec<(String, u8)> {
    engine
        .clickhouse()
        .client()
        .query(
            "SELECT mutation_id, is_done FROM system.mutations WHERE database = currentDatabase() AND table = 'events'
             AND command LIKE '%person_id = joinGet(%'",
        )
        .fetch_all()
        .await
        .unwrap()
}

/// Queues a slow mutation of events (it deletes nothing, sleeping 30 µs per row) ahead of the migration's:
/// ClickHouse runs a table's mutations in order, so the migration's stays pending for seconds, long enough to
/// stop it mid-way whatever the machine.
async fn queue_slow_mutation_ahead(engine: &Engine) {
    engine.clickhouse().client().query("ALTER TABLE events DELETE WHERE sleepEachRow(0.00003) != 0").execute().await.unwrap();
}

async fn wait_for_mutation_in_checkpoint(engine: &Engine) -> MigrationOverview {
    wait_for(engine, NAME, Duration::from_secs(60), "waiting for its mutation", |overview| {
        overview.record.current_operation_index == 2
            && overview.record.checkpoint.as_ref().is_some_and(|checkpoint| checkpoint["mutation_id"].is_string())
    })
    .await
}

#[tokio::test]
async fn every_event_gets_its_persons_id_and_nothing_else_changes() {
    let engine = seeded(1_000_000).await;
    let original = checksums(&engine).await;
    queue_slow_mutation_ahead(&engine).await;
    let _runner = spawn_runner(&engine);
    start(&engine).await;
    let running = wait_for_mutation_in_checkpoint(&engine).await;
    let mutation_id = running.record.checkpoint.unwrap()["mutation_id"].as_str().unwrap().to_string();
    // Operation 2 of 4 spans 50% to 75%: progress moves inside it as parts are rewritten.
    let moving = wait_for(&engine, NAME, Duration::from_secs(60), "part way through the mutation", |overview| {
        overview.record.current_operation_index == 2 && overview.record.progress > 50 || overview.record.current_operation_index > 2
    })
    .await;
    assert!(moving.record.current_operation_index == 2 && moving.record.progress < 75, "{:?}", moving.record);
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(NAME).await);

    assert_eq!(own_mutations(&engine).await, [(mutation_id, 1)], "one mutation, the one recorded, done");
    assert_eq!(wrong_person_ids(&engine).await, 0);
    assert_eq!(count(&engine, "SELECT count() FROM events WHERE person_id = toUUID('00000000-0000-0000-0000-000000000000')").await, 0);
    assert_eq!(checksums(&engine).await, original, "the event columns are untouched");
    assert_eq!(columns(&engine, "events").await.last().unwrap(), &("person_id".to_string(), "UUID".to_string()));
    assert_eq!(tables(&engine).await, ["events", "person"]);
    assert_eq!(lookup_tables(&engine).await, 0, "the lookup table is gone");
    assert!(!engine.migration(NAME).await.unwrap().record.status.is_active());
}

#[tokio::test]
async fn rollback_restores_the_original_table_exactly() {
    let engine = seeded(1_000_000).await;
    let (original, original_columns) = (checksums(&engine).await, columns(&engine, "events").await);
    queue_slow_mutation_ahead(&engine).await;
    let _runner = spawn_runner(&engine);
    start(&engine).await;
    wait_for_mutation_in_checkpoint(&engine).await;
    engine.stop(NAME, TESTER, true).await.unwrap();
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::RolledBack, "{:?}", engine.errors(NAME).await);
    let message = engine.errors(NAME).await.unwrap().last().unwrap().message.clone();
    assert!(message.contains("killed") || message.contains("goes on"), "stopped with its mutation pending: {message}");

    assert_eq!(columns(&engine, "events").await, original_columns);
    assert_eq!(checksums(&engine).await, original);
    assert_eq!(tables(&engine).await, ["events", "person"]);
    assert!(own_mutations(&engine).await.iter().all(|(_, done)| *done == 1), "no mutation left pending");
    assert_eq!(lookup_tables(&engine).await, 0, "no lookup table left, in this database or the server's default one");
}

#[tokio::test]
async fn stop_kills_the_mutation_or_on_old_servers_says_it_goes_on_and_resume_finishes() {
    let engine = seeded(1_000_000).await;
    queue_slow_mutation_ahead(&engine).await;
    let _runner = spawn_runner(&engine);
    start(&engine).await;
    let running = wait_for_mutation_in_checkpoint(&engine).await;
    let mutation_id = running.record.checkpoint.unwrap()["mutation_id"].as_str().unwrap().to_string();
    engine.stop(NAME, TESTER, false).await.unwrap();
    let stopped = settled(&engine).await;
    assert_eq!(stopped.record.status, Status::Errored);
    let message = engine.errors(NAME).await.unwrap().last().unwrap().message.clone();
    assert!(message.starts_with(&format!("stopped by {TESTER} during operation 2")), "{message}");
    if engine.clickhouse().capabilities().kills_mutations() {
        assert!(message.contains(&format!("mutation {mutation_id} was killed")), "{message}");
    } else {
        assert!(message.contains("cannot kill a mutation (KILL MUTATION came in 19.3)"), "{message}");
        assert!(message.contains(&format!("mutation {mutation_id} goes on")), "{message}");
        // As documented: it runs to the end by itself.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while own_mutations(&engine).await.iter().any(|(_, done)| *done == 0) {
            assert!(std::time::Instant::now() < deadline, "the mutation never finished");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    engine.resume(NAME, TESTER).await.unwrap();
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(NAME).await);
    assert_eq!(wrong_person_ids(&engine).await, 0);
    assert_eq!(tables(&engine).await, ["events", "person"]);
}

#[tokio::test]
async fn a_run_interrupted_mid_mutation_and_resumed_is_identical_to_a_clean_run() {
    let clean = seeded(1_000_000).await;
    let clean_runner = spawn_runner(&clean);
    start(&clean).await;
    assert_eq!(settled(&clean).await.record.status, Status::Completed);
    drop(clean_runner);

    let interrupted = seeded(1_000_000).await;
    queue_slow_mutation_ahead(&interrupted).await;
    let runner = spawn_runner(&interrupted);
    start(&interrupted).await;
    wait_for_mutation_in_checkpoint(&interrupted).await;
    // The runner shuts down (a deploy) while the mutation runs: the mutation goes on in the server.
    runner.send(true).unwrap();
    let errored = settled(&interrupted).await;
    assert_eq!(errored.record.status, Status::Errored);
    assert_eq!(errored.record.current_operation_index, 2);
    assert!(own_mutations(&interrupted).await.iter().any(|(_, done)| *done == 0), "interrupted with its mutation pending");

    let _runner = spawn_runner(&interrupted);
    interrupted.resume(NAME, TESTER).await.unwrap();
    let done = settled(&interrupted).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", interrupted.errors(NAME).await);
    assert_eq!(own_mutations(&interrupted).await.len(), 1, "the resume waited for the pending mutation, it issued no other");
    assert_eq!(person_id_checksum(&interrupted).await, person_id_checksum(&clean).await);
    assert_eq!(checksums(&interrupted).await, checksums(&clean).await);
    assert_eq!(columns(&interrupted, "events").await, columns(&clean, "events").await);
    assert_eq!(tables(&interrupted).await, tables(&clean).await);
}

#[tokio::test]
async fn an_instance_created_with_person_id_does_not_need_it() {
    let config = engine::testing::fresh_databases().await;
    let engine = Engine::connect(&config, vec![events_sort_key::definition(), backfill_person_id::definition()]).await.unwrap();
    assert!(!engine.definition(NAME).unwrap().depends_on.is_empty());
    engine.clickhouse().client().query(EVENTS_AFTER_0001).execute().await.unwrap();
    engine.clickhouse().client().query("ALTER TABLE events ADD COLUMN person_id UUID").execute().await.unwrap();
    engine.complete_not_required().await.unwrap();
    let record = engine.migration(NAME).await.unwrap().record;
    assert_eq!(record.status, Status::Completed);
    assert!(record.started_at.is_none(), "it never ran");
}
