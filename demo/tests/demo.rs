//! Seeding the demo data into a real ClickHouse: the requested rows in one partition per month, one person
//! per distinct id, identical data for identical requests, and no seed over existing data without replace.

use demo::{self, SeedRequest, EVENTS_TABLE, PERSON_TABLE};
use engine::clickhouse::quote_identifier;
use engine::{Engine, Error};

/// A fixed end of the window, so that the expected partitions do not depend on today's date.
fn request(events: u64) -> SeedRequest {
    SeedRequest { until: "2024-06-15T00:00:00Z".parse().unwrap(), ..SeedRequest::new(events) }
}

async fn fresh_engine() -> Engine {
    Engine::connect(&engine::testing::fresh_databases().await, demo::migrations::all()).await.expect("connect")
}

#[test]
fn the_demo_migrations_and_the_specs_set_hold_together() {
    engine::loader::check(&demo::migrations::all()).expect("the demo's four");
    let with_specs: Vec<_> = demo::migrations::all().into_iter().chain(demo::migrations::e2e::all()).collect();
    engine::loader::check(&with_specs).expect("with the specs' set");
}

async fn count(engine: &Engine, query: &str) -> u64 {
    engine.clickhouse().client().query(query).fetch_one().await.unwrap_or_else(|error| panic!("{query}: {error}"))
}

#[tokio::test]
async fn seeding_writes_the_requested_events_one_partition_per_month() {
    let engine = fresh_engine().await;
    assert!(!demo::events_table_exists(engine.clickhouse()).await.unwrap());

    let report = demo::seed(engine.clickhouse(), &request(100_000)).await.expect("seed");

    assert!(demo::events_table_exists(engine.clickhouse()).await.unwrap());
    assert_eq!((report.events, report.persons, report.partitions), (100_000, 5_000, 18));
    assert_eq!(count(&engine, "SELECT count() FROM events").await, 100_000);
    let partitions = engine::tables::partition_row_counts(engine.clickhouse(), EVENTS_TABLE).await.unwrap();
    let ids: Vec<&str> = partitions.iter().map(|(id, _)| id.as_str()).collect();
    let mut expected: Vec<String> = (1..=12).map(|month| format!("2023{month:02}")).collect();
    expected.extend((1..=6).map(|month| format!("2024{month:02}")));
    assert_eq!(ids, expected);
    // A constant event rate: the 14 days of June 2024 get 14/31 of May's events.
    let june = partitions.last().unwrap().1 as f64;
    let may = partitions[partitions.len() - 2].1 as f64;
    assert!((june / may - 14.0 / 31.0).abs() < 0.01, "June {june}, May {may}");

    assert_eq!(
        count(&engine, "SELECT count() FROM events WHERE timestamp < toDateTime('2023-01-01 00:00:00', 'UTC') OR timestamp >= toDateTime('2024-06-15 00:00:00', 'UTC')").await,
        0
    );
    assert_eq!(count(&engine, "SELECT uniqExact(uuid) FROM events").await, 100_000);
    assert_eq!(count(&engine, "SELECT uniqExact(team_id) FROM events").await, 5);
    assert_eq!(count(&engine, "SELECT count() FROM events WHERE created_at < timestamp").await, 0);
    let names: Vec<(String, u64)> = engine
        .clickhouse()
        .client()
        .query("SELECT event, count() AS events FROM events GROUP BY event ORDER BY events DESC")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(names.len(), 7, "{names:?}");
    assert_eq!(names[0].0, "$pageview", "{names:?}");
    assert_eq!(
        count(&engine, "SELECT count() FROM events WHERE NOT startsWith(properties, '{\"$current_url\":\"https://example.com/page/')")
            .await,
        0
    );
}

#[tokio::test]
async fn every_distinct_id_has_exactly_one_person() {
    let engine = fresh_engine().await;
    let report = demo::seed(engine.clickhouse(), &SeedRequest { distinct_ids: 777, teams: 3, ..request(20_000) }).await.expect("seed");

    assert_eq!(report.persons, 777);
    assert!(engine::tables::table_exists(engine.clickhouse(), PERSON_TABLE).await.unwrap());
    assert_eq!(count(&engine, "SELECT uniqExact(team_id, distinct_id) FROM person").await, 777);
    assert_eq!(
        count(&engine, "SELECT count() FROM events WHERE (team_id, distinct_id) NOT IN (SELECT team_id, distinct_id FROM person)").await,
        0
    );
    assert_eq!(count(&engine, "SELECT uniqExact(team_id) FROM person").await, 3);
    // The actors are skewed: the busiest distinct id acts about 7 times as often as the average (20,000 / 777 ≈ 26).
    assert!(count(&engine, "SELECT max(events) FROM (SELECT count() AS events FROM events GROUP BY distinct_id)").await > 100);
}

#[tokio::test]
async fn the_same_request_writes_identical_data_whatever_the_batch_size() {
    let (first, second) = (fresh_engine().await, fresh_engine().await);
    demo::seed(first.clickhouse(), &request(50_000)).await.expect("first seed");
    demo::seed(second.clickhouse(), &SeedRequest { batch_rows: 1_234, concurrent_inserts: 4, ..request(50_000) })
        .await
        .expect("second seed");

    let checksums = demo::events_partition_checksums(first.clickhouse(), EVENTS_TABLE).await.unwrap();
    assert_eq!(checksums.len(), 18);
    assert_eq!(checksums.iter().map(|partition| partition.rows).sum::<u64>(), 50_000);
    assert_eq!(checksums, demo::events_partition_checksums(second.clickhouse(), EVENTS_TABLE).await.unwrap());
    let persons = "SELECT sum(cityHash64(toString(id), team_id, distinct_id, properties, created_at)) FROM person";
    assert_eq!(count(&first, persons).await, count(&second, persons).await);

    // A different request is different data.
    let other = fresh_engine().await;
    demo::seed(other.clickhouse(), &request(50_001)).await.expect("third seed");
    assert_ne!(checksums, demo::events_partition_checksums(other.clickhouse(), EVENTS_TABLE).await.unwrap());
}

#[tokio::test]
async fn seeding_over_existing_data_is_refused_unless_replace() {
    let engine = fresh_engine().await;
    demo::seed(engine.clickhouse(), &request(1_000)).await.expect("first seed");

    let error = demo::seed(engine.clickhouse(), &request(2_000)).await.expect_err("second seed must be refused");
    assert!(error.is_refusal(), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("events: 1000 rows"), "{message}");
    assert!(message.contains("replace"), "{message}");
    assert_eq!(count(&engine, "SELECT count() FROM events").await, 1_000);

    let report = demo::seed(engine.clickhouse(), &SeedRequest { replace: true, ..request(2_000) }).await.expect("replace");
    assert_eq!((report.events, report.persons), (2_000, 100));
    assert_eq!(count(&engine, "SELECT count() FROM events").await, 2_000);
    assert_eq!(count(&engine, "SELECT count() FROM person").await, 100);
}

#[tokio::test]
async fn a_bad_request_is_refused_before_any_table_is_created() {
    let engine = fresh_engine().await;
    let error = demo::seed(engine.clickhouse(), &request(0)).await.expect_err("0 events must be refused");
    assert!(matches!(&error, Error::InvalidRequest(message) if message.contains("cannot seed 0 events")), "{error:?}");
    assert!(!demo::events_table_exists(engine.clickhouse()).await.unwrap());
}

#[tokio::test]
async fn ten_million_events_seed_in_reasonable_time() {
    let engine = fresh_engine().await;
    let report = demo::seed(engine.clickhouse(), &request(10_000_000)).await.expect("seed");
    println!("{report}");
    assert_eq!((report.events, report.persons, report.partitions), (10_000_000, 500_000, 18));

    // About 400 MB on disk: not left behind for `scripts/test` to clean up.
    let drop = format!("DROP DATABASE {}", quote_identifier(engine.clickhouse().database()));
    engine.clickhouse().client().query(&drop).execute().await.expect("drop the test database");
}
