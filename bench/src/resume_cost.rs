//! Resume cost: how many rows a resume copies again after a stop in the middle of a large partition. 0001 copies
//! one month of events in slices of [`SLICE_ROWS`] rows on as many streams as the machine has cores; it is
//! stopped once a few slices are in, and resumed to the end. What the first attempt wrote and the resume copies
//! again is what its staging tables held at the stop (the slices in flight); the slices already attached stay.

use std::time::Duration;

use demo::migrations::events_sort_key::NAME;
use demo::{seed, SeedRequest};
use engine::clickhouse::ClickHouse;
use engine::recipes::partition_copy::CopyCheckpoint;
use engine::status::Status;
use engine::tables::row_count;
use engine::Engine;

use crate::changes::{follow_until, is_settled};
use crate::databases::Databases;
use crate::error::{Error, Result};
use crate::fixture::{self, wait_for_merges, ACTOR};
use crate::report::{self, Table};

/// One month of events, one partition.
const EVENTS: u64 = 4_000_000;
/// The slices' bound: eight slices of the month.
const SLICE_ROWS: u64 = 500_000;
/// Teams the events belong to: the slices are ranges of `team_id`, the first element of `events`' sort key.
const TEAMS: u32 = 50;
/// Slices attached before the stop.
const SLICES_BEFORE_THE_STOP: usize = 3;
const LIMIT: Duration = Duration::from_secs(600);
/// The new table 0001 copies into, and its staging tables' prefix.
const NEW_TABLE: &str = "events_0001_new";

pub struct ResumeCost {
    pub streams: usize,
    /// Slices of the partition, attached at the stop, and in flight then.
    pub slices: usize,
    pub slices_done: usize,
    pub slices_in_flight: usize,
    /// Rows in the new table at the stop: kept.
    pub rows_kept: u64,
    /// Rows in the staging tables at the stop: copied again by the resume.
    pub rows_copied_twice: u64,
    /// Rows of the largest slice (ranges of a key with few values are not all equal).
    pub largest_slice: u64,
}

pub async fn measure(databases: &Databases) -> Result<ResumeCost> {
    let config = databases.fresh().await?;
    let engine = fixture::connect(&config).await?;
    let outcome = stop_and_resume(&engine).await;
    fixture::disconnect(&engine).await;
    outcome
}

async fn stop_and_resume(engine: &Engine) -> Result<ResumeCost> {
    let clickhouse = engine.clickhouse();
    eprintln!("resume cost: seeding {} events in one partition", report::count(EVENTS));
    seed(clickhouse, &SeedRequest { months: 1, teams: TEAMS, ..fixture::seed_request(EVENTS) }).await?;
    wait_for_merges(clickhouse).await?;
    let runner = engine::testing::spawn_runner(engine);
    let parameters = serde_json::json!({ "slice_rows": SLICE_ROWS, "max_threads": 1 });
    let mut changes = engine.subscribe().await;
    engine.start(NAME, ACTOR, parameters.as_object().expect("an object")).await?;
    let sliced = |record: &engine::record::MigrationRecord| -> CopyCheckpoint {
        record.checkpoint.clone().and_then(|checkpoint| serde_json::from_value(checkpoint).ok()).unwrap_or_default()
    };
    follow_until(engine, &mut changes, NAME, LIMIT, |record| {
        record.current_operation_index == 1 && sliced(record).slices.values().any(|slices| slices.done.len() >= SLICES_BEFORE_THE_STOP)
    })
    .await?;
    engine.stop(NAME, ACTOR, false).await?;
    let stopped = follow_until(engine, &mut changes, NAME, LIMIT, is_settled).await?;
    if stopped.status != Status::Errored {
        return Err(Error::Unexpected(format!("{NAME} ended {} after a stop, not errored", stopped.status)));
    }
    let checkpoint = sliced(&stopped);
    let partition = checkpoint.slices.values().next().ok_or_else(|| Error::Unexpected("the month was not copied in slices".into()))?;
    let rows_kept = row_count(clickhouse, NEW_TABLE).await?;
    let rows_copied_twice = staging_rows(clickhouse).await?;
    let largest_slice = largest_slice(clickhouse, partition).await?;
    eprintln!("resume cost: stopped with {rows_kept} rows kept, {rows_copied_twice} in staging; resuming");
    engine.resume(NAME, ACTOR).await?;
    let done = follow_until(engine, &mut changes, NAME, LIMIT, is_settled).await?;
    let _ = runner.send(true);
    if done.status != Status::Completed || row_count(clickhouse, "events").await? != EVENTS {
        return Err(Error::Unexpected(format!("{NAME} ended {} after the resume, or lost rows", done.status)));
    }
    Ok(ResumeCost {
        streams: crate::machine::cores().min(16),
        slices: partition.bounds.len() + 1,
        slices_done: partition.done.len(),
        slices_in_flight: partition.in_flight.len(),
        rows_kept,
        rows_copied_twice,
        largest_slice,
    })
}

/// Rows the staging tables of 0001's copy hold.
async fn staging_rows(clickhouse: &ClickHouse) -> Result<u64> {
    Ok(clickhouse
        .client()
        .query("SELECT sum(rows) FROM system.parts WHERE database = ? AND active AND startsWith(table, ?)")
        .bind(clickhouse.database())
        .bind(format!("{NEW_TABLE}_stage"))
        .fetch_one()
        .await?)
}

/// Rows of the partition's largest slice, counted in `events`.
async fn largest_slice(clickhouse: &ClickHouse, partition: &engine::recipes::partition_copy::SlicedPartition) -> Result<u64> {
    let mut largest = 0;
    for index in 0..=partition.bounds.len() {
        let sql = format!("SELECT count() FROM events WHERE {}", partition.condition(index));
        largest = largest.max(clickhouse.client().query(&sql).fetch_one::<u64>().await?);
    }
    Ok(largest)
}

impl ResumeCost {
    pub fn summarize(&self, summary: &mut Table) {
        let case = format!(
            "resume cost, {} events in one partition, slices of {} rows, {} streams",
            report::count(EVENTS),
            report::count(SLICE_ROWS),
            self.streams
        );
        let bound = self.slices_in_flight as u64 * self.largest_slice;
        summary.push(vec![
            case.clone(),
            "rows copied twice after a stop mid-partition (in the staging tables at the stop)".into(),
            format!(
                "{} in {} slice(s) in flight; {} ({})",
                report::count(self.rows_copied_twice),
                self.slices_in_flight,
                if self.rows_copied_twice <= bound { "met" } else { "missed" },
                if self.slices_in_flight <= self.streams { "one slice per stream at most" } else { "more slices in flight than streams" }
            ),
            format!("≤ one slice ({}) per stream", report::count(self.largest_slice)),
        ]);
        summary.push(vec![
            case,
            "kept through the stop (slices attached), which a copy by whole partitions would redo".into(),
            format!("{} rows in {} of {} slices", report::count(self.rows_kept), self.slices_done, self.slices),
            String::new(),
        ]);
    }
}
