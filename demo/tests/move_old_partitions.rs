//! 0003_move_old_partitions on a real seeded events table: old months end up whole in the archive and recent
//! ones stay, a stop leaves every month whole somewhere and resume finishes, rollback brings every row
//! back (late rows included), a resume from every crash point of a partition move ends identical to a clean
//! run, and a new-schema instance does not need it.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use demo::migrations::move_old_partitions::{self, cutoff_month, ARCHIVE, NAME};
use demo::migrations::{backfill_person_id, events_sort_key};
use demo::{events_partition_checksums, seed, PartitionChecksum, SeedRequest};
use engine::status::Status;
use engine::tables::partition_row_counts;
use engine::testing::{is_settled, spawn_runner, wait_for};
use engine::{Engine, MigrationOverview};
use serde_json::json;

const TESTER: &str = "tester@example.com";

/// The events table as it is after 0001 and 0002: new sort and sample keys, and person_id.
const EVENTS_AFTER_0002: &str = "CREATE TABLE events (uuid UUID, event String, team_id Int64, distinct_id String, properties String,
     timestamp DateTime('UTC'), created_at DateTime, person_id UUID) ENGINE = MergeTree PARTITION BY toYYYYMM(timestamp)
     ORDER BY (team_id, toDate(timestamp), event, cityHash64(distinct_id), uuid) SAMPLE BY cityHash64(distinct_id)";

/// A fresh instance on the schema 0001 and 0002 leave (so they count as completed), seeded with `events`
/// events over the `months` months ending `until`.
async fn seeded(events: u64, months: u32, until: DateTime<Utc>) -> Engine {
    let mut config = engine::testing::fresh_databases().await;
    config.lease_timeout = Duration::from_secs(2);
    let definitions = vec![events_sort_key::definition(), backfill_person_id::definition(), move_old_partitions::definition()];
    let engine = Engine::connect(&config, definitions).await.expect("connect");
    engine.clickhouse().client().query(EVENTS_AFTER_0002).execute().await.unwrap();
    engine.complete_not_required().await.unwrap();
    for dependency in [events_sort_key::NAME, backfill_person_id::NAME] {
        assert_eq!(engine.migration(dependency).await.unwrap().record.status, Status::Completed);
    }
    seed(engine.clickhouse(), &SeedRequest { months, until, ..SeedRequest::new(events) }).await.expect("seed");
    engine
}

fn today() -> DateTime<Utc> {
    SeedRequest::new(1).until
}

async fn start(engine: &Engine, older_than_months: i64) {
    let parameters = json!({ "older_than_months": older_than_months });
    engine.start(NAME, TESTER, parameters.as_object().unwrap()).await.expect("start");
}

async fn settled(engine: &Engine) -> MigrationOverview {
    wait_for(engine, NAME, Duration::from_secs(300), "settled", is_settled).await
}

async fn checksums(engine: &Engine, table: &str) -> BTreeMap<String, PartitionChecksum> {
    events_partition_checksums(engine.clickhouse(), table)
        .await
        .unwrap()
        .into_iter()
        .map(|partition| (partition.partition_id.clone(), partition))
        .collect()
}

/// Per month, the rows and checksum of events and the archive together (checksums add up modulo 2^64).
async fn union_checksums(engine: &Engine) -> BTreeMap<String, PartitionChecksum> {
    let mut union = checksums(engine, "events").await;
    if tables(engine).await.iter().any(|name| name == ARCHIVE) {
        for (month, archived) in checksums(engine, ARCHIVE).await {
            let entry = union.entry(month).or_insert(PartitionChecksum { rows: 0, checksum: 0, ..archived.clone() });
            entry.rows += archived.rows;
            entry.checksum = entry.checksum.wrapping_add(archived.checksum);
        }
    }
    union
}

/// Months holding rows in `table`.
async fn months(engine: &Engine, table: &str) -> Vec<String> {
    let partitions = partition_row_counts(engine.clickhouse(), table).await.unwrap();
    partitions.into_iter().filter(|(_, rows)| *rows > 0).map(|(month, _)| month).collect()
}

/// `name type` of each column of `table`, in table order.
async fn columns(engine: &Engine, table: &str) -> Vec<String> {
    let query = "SELECT concat(name, ' ', type) FROM system.columns WHERE database = currentDatabase() AND table = ?";
    engine.clickhouse().client().query(query).bind(table).fetch_all().await.unwrap()
}

async fn tables(engine: &Engine) -> Vec<String> {
    let query = "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name";
    engine.clickhouse().client().query(query).fetch_all().await.unwrap()
}

async fn execute(engine: &Engine, sql: &str) {
    engine.clickhouse().client().query(sql).execute().await.unwrap_or_else(|error| panic!("{sql}: {error}"));
}

async fn count(engine: &Engine, query: &str) -> u64 {
    engine.clickhouse().client().query(query).fetch_one().await.unwrap_or_else(|error| panic!("{query}: {error}"))
}

/// Adds 500 events that arrive late into `month` (`YYYYMM`), the same ones on every instance.
async fn insert_late_events(engine: &Engine, month: &str) {
    let first_second = format!("{}-{}-01 01:00:00", &month[..4], &month[4..]);
    execute(
        engine,
        &format!(
            "INSERT INTO events (uuid, event, team_id, distinct_id, properties, timestamp, created_at)
             SELECT toUUID(UUIDNumToString(sipHash128(concat('late-', toString(number))))), 'late_event', 1, 'user-1', '{{}}',
                    toDateTime('{first_second}', 'UTC') + number, now()
             FROM numbers(500)"
        ),
    )
    .await;
}

fn moved(overview: &MigrationOverview) -> Vec<String> {
    let checkpoint = overview.record.checkpoint.clone().unwrap_or_default();
    checkpoint["moved"].as_array().map(|months| months.iter().map(|month| month.to_string()).collect()).unwrap_or_default()
}

/// Waits until at least `partitions` months are moved, with more left, and stops the migration there.
async fn stop_after(engine: &Engine, partitions: usize, rollback: bool) -> MigrationOverview {
    let moving = wait_for(engine, NAME, Duration::from_secs(60), "part way through the moves", |overview| {
        overview.record.current_operation_index == 1 && moved(overview).len() >= partitions
    })
    .await;
    engine.stop(NAME, TESTER, rollback).await.expect("stopped before the last partition");
    let stopped = settled(engine).await;
    assert!(moved(&stopped).len() < 50, "stopped part way: {:?}", moving.record);
    stopped
}

#[tokio::test]
async fn old_months_move_whole_into_the_archive_and_recent_ones_stay() {
    // Until now, not today at 00:00: on the 1st of a month the months would end with the one before.
    let engine = seeded(300_000, 18, Utc::now()).await;
    let original = checksums(&engine, "events").await;
    let _runner = spawn_runner(&engine);
    start(&engine, 12).await;
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(NAME).await);

    let cutoff = cutoff_month(Utc::now(), 12).to_string();
    let (old, recent): (Vec<String>, Vec<String>) = original.keys().cloned().partition(|month| *month < cutoff);
    assert_eq!(old.len(), 5, "18 months ending this one: the 5 oldest are over 12 months old");
    assert_eq!(months(&engine, ARCHIVE).await, old);
    assert_eq!(months(&engine, "events").await, recent);
    let archive = checksums(&engine, ARCHIVE).await;
    let events = checksums(&engine, "events").await;
    for (month, partition) in &original {
        let now_in = if *month < cutoff { &archive } else { &events };
        assert_eq!(now_in.get(month), Some(partition), "month {month} is whole where it belongs");
    }
    assert_eq!(tables(&engine).await, ["events", ARCHIVE, "person"]);
    assert_eq!(columns(&engine, ARCHIVE).await, columns(&engine, "events").await);
}

#[tokio::test]
async fn a_stop_leaves_every_month_whole_and_resume_finishes() {
    let engine = seeded(200_000, 60, today()).await;
    let original = checksums(&engine, "events").await;
    let _runner = spawn_runner(&engine);
    start(&engine, 1).await;
    let stopped = stop_after(&engine, 3, false).await;
    assert_eq!(stopped.record.status, Status::Errored);
    assert_eq!(stopped.record.current_operation_index, 1);
    let message = engine.errors(NAME).await.unwrap().last().unwrap().message.clone();
    assert_eq!(message, format!("stopped by {TESTER} during operation 1"));
    let archived = months(&engine, ARCHIVE).await;
    assert!(moved(&stopped).iter().all(|month| archived.contains(month)), "the checkpoint lists only moved months");
    // Each month is whole in events, in the archive, or (the one the stop interrupted) in both; never lost.
    let (events, archive) = (checksums(&engine, "events").await, checksums(&engine, ARCHIVE).await);
    for (month, partition) in &original {
        let copies = [events.get(month), archive.get(month)];
        assert!(copies.iter().flatten().all(|copy| *copy == partition), "month {month}: {copies:?}");
        assert!(copies.iter().any(Option::is_some), "month {month} lost");
    }

    engine.resume(NAME, TESTER).await.unwrap();
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(NAME).await);
    let cutoff = cutoff_month(Utc::now(), 1).to_string();
    assert_eq!(months(&engine, "events").await, original.keys().filter(|month| **month >= cutoff).cloned().collect::<Vec<_>>());
    assert_eq!(union_checksums(&engine).await, original);
}

#[tokio::test]
async fn stop_and_rollback_mid_way_restores_events_exactly() {
    let engine = seeded(200_000, 60, today()).await;
    let original = checksums(&engine, "events").await;
    let _runner = spawn_runner(&engine);
    start(&engine, 1).await;
    let done = stop_after(&engine, 3, true).await;
    assert_eq!(done.record.status, Status::RolledBack, "{:?}", engine.errors(NAME).await);
    assert_eq!(checksums(&engine, "events").await, original);
    assert_eq!(tables(&engine).await, ["events", "person"]);
}

#[tokio::test]
async fn rollback_brings_back_every_row_including_late_ones_in_moved_months() {
    let engine = seeded(200_000, 60, today()).await;
    let mut expected = checksums(&engine, "events").await;
    let _runner = spawn_runner(&engine);
    start(&engine, 1).await;
    let stopped = stop_after(&engine, 3, false).await;
    // Events arrive late into a month already moved: rollback must merge them with the archived ones.
    let month = moved(&stopped)[0].clone();
    insert_late_events(&engine, &month).await;
    let late = checksums(&engine, "events").await[&month].clone();
    let entry = expected.get_mut(&month).unwrap();
    entry.rows += late.rows;
    entry.checksum = entry.checksum.wrapping_add(late.checksum);

    engine.rollback(NAME, TESTER).await.unwrap();
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::RolledBack, "{:?}", engine.errors(NAME).await);
    assert_eq!(checksums(&engine, "events").await, expected);
    assert_eq!(tables(&engine).await, ["events", "person"]);
}

#[tokio::test]
async fn a_resume_from_every_crash_point_of_a_move_is_identical_to_a_clean_run() {
    let until = today();
    let crashed = seeded(200_000, 60, until).await;
    let clean = seeded(200_000, 60, until).await;
    let _runners = (spawn_runner(&crashed), spawn_runner(&clean));
    start(&crashed, 1).await;
    let stopped = stop_after(&crashed, 2, false).await;

    // The three newest months to move are still untouched (months move oldest first). Put each in the state
    // a crash at one point of its move would leave.
    let cutoff = cutoff_month(Utc::now(), 1).to_string();
    let unmoved: Vec<String> = months(&crashed, "events").await.into_iter().filter(|month| *month < cutoff).collect();
    let [copied, dropped, late] = [&unmoved[unmoved.len() - 3], &unmoved[unmoved.len() - 2], &unmoved[unmoved.len() - 1]];
    assert!(!moved(&stopped).contains(copied) && !months(&crashed, ARCHIVE).await.contains(copied));
    for month in [copied, dropped, late] {
        execute(&crashed, &format!("ALTER TABLE {ARCHIVE} REPLACE PARTITION ID '{month}' FROM events")).await;
    }
    for month in [dropped, late] {
        execute(&crashed, &format!("ALTER TABLE events DROP PARTITION ID '{month}'")).await;
    }
    insert_late_events(&crashed, late).await;
    insert_late_events(&clean, late).await;

    crashed.resume(NAME, TESTER).await.unwrap();
    start(&clean, 1).await;
    let (crashed_done, clean_done) = (settled(&crashed).await, settled(&clean).await);
    assert_eq!(crashed_done.record.status, Status::Completed, "{:?}", crashed.errors(NAME).await);
    assert_eq!(clean_done.record.status, Status::Completed, "{:?}", clean.errors(NAME).await);

    assert_eq!(checksums(&crashed, ARCHIVE).await, checksums(&clean, ARCHIVE).await);
    assert_eq!(checksums(&crashed, "events").await, checksums(&clean, "events").await);
    assert_eq!(count(&crashed, "SELECT toUInt64(count() - uniqExact(uuid)) FROM events_archive").await, 0, "no row archived twice");
    assert_eq!(tables(&crashed).await, tables(&clean).await);
}

#[tokio::test]
async fn an_instance_created_with_the_archive_does_not_need_it() {
    let config = engine::testing::fresh_databases().await;
    let definitions = vec![events_sort_key::definition(), backfill_person_id::definition(), move_old_partitions::definition()];
    let engine = Engine::connect(&config, definitions).await.unwrap();
    execute(&engine, EVENTS_AFTER_0002).await;
    execute(&engine, "CREATE TABLE events_archive AS events").await;
    engine.complete_not_required().await.unwrap();
    let record = engine.migration(NAME).await.unwrap().record;
    assert_eq!(record.status, Status::Completed);
    assert!(record.started_at.is_none(), "it never ran");
}
