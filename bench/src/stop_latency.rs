//! Stop latency: from `Engine::stop` to the copy's query gone from `system.processes` (polled beside the
//! stop call), to the call returning, and to the runner having recorded the stop, on 0001_events_sort_key
//! copying one big partition on one thread.

use std::time::{Duration, Instant};

use demo::migrations::events_sort_key::NAME;
use demo::{seed, SeedRequest};
use engine::clickhouse::ClickHouse;
use engine::status::Status;
use engine::Engine;

use crate::changes::{follow_until, is_settled};
use crate::databases::Databases;
use crate::error::{Error, Result};
use crate::fixture::{self, wait_for_merges, ACTOR};
use crate::report::{self, Table};

/// One month of events, one partition: copying it on one thread takes seconds, so a stop always meets a
/// running copy.
const EVENTS: u64 = 4_000_000;
/// How long a start or resume may take to reach the copy.
const COPY_START_LIMIT: Duration = Duration::from_secs(60);

pub struct StopLatency {
    /// Stop request to the query gone from `system.processes`, one per stop.
    pub to_query_gone: Vec<Duration>,
    /// Stop request to `Engine::stop` returning (it waits for the kill: `KILL QUERY ... SYNC`).
    pub to_stop_returned: Vec<Duration>,
    /// Stop request to the migration recorded errored with no runner.
    pub to_stop_recorded: Vec<Duration>,
}

/// Starts 0001 with `max_threads=1`, stops it as soon as its copy query runs, and resumes it, `stops` times.
pub async fn measure(databases: &Databases, stops: usize) -> Result<StopLatency> {
    let config = databases.fresh().await?;
    let engine = fixture::connect(&config).await?;
    let outcome = stop_repeatedly(&engine, stops).await;
    fixture::disconnect(&engine).await;
    outcome
}

async fn stop_repeatedly(engine: &Engine, stops: usize) -> Result<StopLatency> {
    eprintln!("stop latency: seeding {} events in one partition", report::count(EVENTS));
    seed(engine.clickhouse(), &SeedRequest { months: 1, ..fixture::seed_request(EVENTS) }).await?;
    wait_for_merges(engine.clickhouse()).await?;
    let runner = engine::testing::spawn_runner(engine);
    let one_thread = serde_json::json!({ "max_threads": 1 });
    let mut latency = StopLatency { to_query_gone: Vec::new(), to_stop_returned: Vec::new(), to_stop_recorded: Vec::new() };
    for attempt in 0..stops {
        if attempt == 0 {
            engine.start(NAME, ACTOR, one_thread.as_object().expect("an object")).await?;
        } else {
            engine.resume(NAME, ACTOR).await?;
        }
        let query_id = running_copy_query(engine).await?;
        // Subscribed now, so that no record from before this stop is taken for its outcome.
        let mut changes = engine.subscribe().await;
        let requested = Instant::now();
        let stop_returned = async {
            engine.stop(NAME, ACTOR, false).await?;
            Ok::<_, Error>(requested.elapsed())
        };
        let query_gone = async {
            while query_is_running(engine.clickhouse(), &query_id).await? {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Ok(requested.elapsed())
        };
        let (stop_returned, query_gone) = tokio::try_join!(stop_returned, query_gone)?;
        latency.to_query_gone.push(query_gone);
        latency.to_stop_returned.push(stop_returned);
        let stopped = follow_until(engine, &mut changes, NAME, COPY_START_LIMIT, is_settled).await?;
        latency.to_stop_recorded.push(requested.elapsed());
        if stopped.status != Status::Errored {
            return Err(Error::Unexpected(format!("{NAME} ended {} after a stop, not errored", stopped.status)));
        }
        eprintln!("stop latency: stop {} of {stops}: query gone after {}", attempt + 1, report::duration(latency.to_query_gone[attempt]));
    }
    let _ = runner.send(true);
    Ok(latency)
}

/// Waits until the recorded query of the copy operation is an `INSERT` that ClickHouse is running, and
/// returns its id.
async fn running_copy_query(engine: &Engine) -> Result<String> {
    let deadline = Instant::now() + COPY_START_LIMIT;
    while Instant::now() < deadline {
        let record = engine.migration(NAME).await?.record;
        let query_id = record.current_query_id;
        if record.current_operation_index == 1 && !query_id.is_empty() && copy_is_running(engine.clickhouse(), &query_id).await? {
            return Ok(query_id);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err(Error::Unexpected(format!("{NAME}'s copy did not start within {} s", COPY_START_LIMIT.as_secs())))
}

async fn copy_is_running(clickhouse: &ClickHouse, query_id: &str) -> Result<bool> {
    let running: u64 = clickhouse
        .client()
        .query("SELECT count() FROM system.processes WHERE query_id = ? AND startsWith(query, 'INSERT')")
        .bind(query_id)
        .fetch_one()
        .await?;
    Ok(running > 0)
}

async fn query_is_running(clickhouse: &ClickHouse, query_id: &str) -> Result<bool> {
    let running: u64 =
        clickhouse.client().query("SELECT count() FROM system.processes WHERE query_id = ?").bind(query_id).fetch_one().await?;
    Ok(running > 0)
}

impl StopLatency {
    /// Adds the stop rows to the summary table.
    pub fn summarize(&self, summary: &mut Table) {
        let case = format!("stop latency, {} stops of a max_threads=1 copy", self.to_query_gone.len());
        let spread = |samples: &[Duration]| {
            format!(
                "min {} / median {} / max {}",
                report::duration(report::percentile(samples, 0.0)),
                report::duration(report::percentile(samples, 50.0)),
                report::duration(report::percentile(samples, 100.0))
            )
        };
        let met = report::percentile(&self.to_query_gone, 100.0) < Duration::from_secs(1);
        summary.push(vec![
            case.clone(),
            "Engine::stop to the query gone from system.processes".into(),
            format!("{} ({})", spread(&self.to_query_gone), if met { "met" } else { "missed" }),
            "< 1 s".into(),
        ]);
        summary.push(vec![
            case.clone(),
            "Engine::stop returning (KILL QUERY ... SYNC answered)".into(),
            spread(&self.to_stop_returned),
            String::new(),
        ]);
        summary.push(vec![
            case,
            "Engine::stop to the stop recorded (errored, runner gone)".into(),
            spread(&self.to_stop_recorded),
            String::new(),
        ]);
    }
}
