//! Engine notification latency: from a progress write in Postgres (`Store::record_position`) to the record
//! arriving on `Engine::subscribe()`. This is the engine's part of live-update latency; the SSE route adds
//! its own serialisation and network hop on top, and is not measured here.

use std::time::{Duration, Instant};

use demo::migrations::events_sort_key::NAME;
use engine::record::MigrationRecord;
use engine::Engine;
use tokio::sync::broadcast;

use crate::changes::follow_until;
use crate::databases::Databases;
use crate::error::{Error, Result};
use crate::fixture::{self, ACTOR};
use crate::report::{self, Table};

/// The runner identity the benchmark claims the migration under, so that its progress writes apply.
const RUNNER_ID: &str = "amigo-bench-runner";
/// Pause between changes, so that each is timed alone.
const PAUSE: Duration = Duration::from_millis(10);

pub struct NotificationLatency {
    /// From the call to `record_position` to the record on the change stream.
    pub to_subscriber: Vec<Duration>,
    /// The `record_position` call alone (its `UPDATE`'s round trip and commit).
    pub writes: Vec<Duration>,
}

/// Claims a queued 0001 as a pretend runner (nothing executes it) and times `changes` progress writes.
pub async fn measure(databases: &Databases, changes: usize) -> Result<NotificationLatency> {
    let config = databases.fresh().await?;
    let engine = fixture::connect(&config).await?;
    let outcome = time_changes(&engine, changes).await;
    fixture::disconnect(&engine).await;
    outcome
}

async fn time_changes(engine: &Engine, changes: usize) -> Result<NotificationLatency> {
    engine.start(NAME, ACTOR, &serde_json::Map::new()).await?;
    if engine.store().claim_request(RUNNER_ID, &engine.definition_names()).await?.is_none() {
        return Err(Error::Unexpected(format!("the queued {NAME} could not be claimed")));
    }
    let mut receiver = engine.subscribe().await;
    // The first subscription starts the engine's listener: the warm-up change waits until it listens.
    change_once(engine, &mut receiver, "warm-up", 0).await?;
    let mut latency = NotificationLatency { to_subscriber: Vec::new(), writes: Vec::new() };
    for change in 0..changes {
        let (to_subscriber, write) = change_once(engine, &mut receiver, &format!("bench-change-{change}"), (change % 100) as u8).await?;
        latency.to_subscriber.push(to_subscriber);
        latency.writes.push(write);
        tokio::time::sleep(PAUSE).await;
    }
    Ok(latency)
}

/// Writes a position naming `query_id` and waits for that record on the change stream.
async fn change_once(
    engine: &Engine,
    receiver: &mut broadcast::Receiver<MigrationRecord>,
    query_id: &str,
    progress: u8,
) -> Result<(Duration, Duration)> {
    let written_from = Instant::now();
    engine.store().record_position(NAME, RUNNER_ID, 1, progress, query_id).await?;
    let write = written_from.elapsed();
    follow_until(engine, receiver, NAME, Duration::from_secs(15), |record| record.current_query_id == query_id).await?;
    Ok((written_from.elapsed(), write))
}

impl NotificationLatency {
    /// Adds the notification row to the summary table.
    pub fn summarize(&self, summary: &mut Table) {
        let samples = &self.to_subscriber;
        summary.push(vec![
            format!("engine notification latency, {} progress writes", samples.len()),
            "Store::record_position to the record on Engine::subscribe() (not SSE)".into(),
            format!(
                "{} (the write alone: median {})",
                report::median_p99_max(samples),
                report::duration(report::percentile(&self.writes, 50.0))
            ),
            "SSE: < 500 ms end to end".into(),
        ]);
    }
}
