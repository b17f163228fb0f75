//! What the cases start from: an engine over fresh databases that knows 0001_events_sort_key, demo events
//! seeded for a fixed date so that every run copies the same rows, and a ClickHouse at rest.

use std::time::Duration;

use chrono::{DateTime, Utc};
use demo::migrations::events_sort_key;
use demo::SeedRequest;
use engine::{Engine, EngineConfig};

use crate::error::Result;

/// The actor the benchmark's requests are recorded under.
pub const ACTOR: &str = "amigo-bench";

/// The end of the seeded window: fixed, so that the same request seeds the same rows on any day.
const SEED_UNTIL: &str = "2024-07-01T00:00:00Z";

/// How long no merge may run in the case's database before ClickHouse counts as at rest.
const QUIET_MERGES: Duration = Duration::from_secs(2);

pub async fn connect(config: &EngineConfig) -> Result<Engine> {
    Ok(Engine::connect(config, vec![events_sort_key::definition()]).await?)
}

/// `events` demo events over the default 18 months ending at [`SEED_UNTIL`].
pub fn seed_request(events: u64) -> SeedRequest {
    SeedRequest { until: SEED_UNTIL.parse::<DateTime<Utc>>().expect("SEED_UNTIL is a date"), ..SeedRequest::new(events) }
}

/// Waits until no merge has run in `database` for [`QUIET_MERGES`], so that a measured copy does not share
/// the cores with merges left over from the seed or the previous copy.
pub async fn wait_for_merges(clickhouse: &engine::clickhouse::ClickHouse) -> Result<()> {
    let poll = Duration::from_millis(250);
    let mut quiet = Duration::ZERO;
    while quiet < QUIET_MERGES {
        let merges: u64 = clickhouse
            .client()
            .query("SELECT count() FROM system.merges WHERE database = ?")
            .bind(clickhouse.database())
            .fetch_one()
            .await?;
        quiet = if merges == 0 { quiet + poll } else { Duration::ZERO };
        tokio::time::sleep(poll).await;
    }
    Ok(())
}

/// Closes the engine's Postgres connections: the idle ones now, the change listener's when its database is
/// dropped (the listener then finds the pool closed and stops reaching the server).
pub async fn disconnect(engine: &Engine) {
    let _ = tokio::time::timeout(Duration::from_millis(500), engine.store().pool().close()).await;
}
