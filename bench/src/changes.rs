//! Following a migration through the engine's change stream (Postgres `NOTIFY`), the way the page does,
//! instead of polling Postgres: a benchmark that polled would add the reads it means to measure.

use std::time::Duration;

use engine::record::MigrationRecord;
use engine::Engine;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::error::{Error, Result};

/// How often the record is read anyway, in case a notification was missed while the listener reconnected.
const REREAD_INTERVAL: Duration = Duration::from_secs(5);

/// Hands every record of migration `name` that arrives on `changes` to `until`, and returns the first one it
/// accepts; fails after `limit`.
pub async fn follow_until(
    engine: &Engine,
    changes: &mut broadcast::Receiver<MigrationRecord>,
    name: &str,
    limit: Duration,
    mut until: impl FnMut(&MigrationRecord) -> bool,
) -> Result<MigrationRecord> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let record = tokio::select! {
            change = changes.recv() => match change {
                Ok(record) if record.name == name => record,
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => read(engine, name).await?,
                Err(RecvError::Closed) => return Err(Error::Unexpected("the engine's change stream closed".into())),
            },
            () = tokio::time::sleep(REREAD_INTERVAL) => read(engine, name).await?,
            () = tokio::time::sleep_until(deadline) => {
                let record = read(engine, name).await?;
                return Err(Error::Unexpected(format!(
                    "{name} did not get where the benchmark waited for within {} s: it is {}, operation {}",
                    limit.as_secs(),
                    record.status,
                    record.current_operation_index
                )));
            }
        };
        if until(&record) {
            return Ok(record);
        }
    }
}

/// True when a run has ended: not starting or running, no runner, nothing queued.
pub fn is_settled(record: &MigrationRecord) -> bool {
    !record.status.is_active() && record.runner_id.is_none() && record.requested_action.is_none()
}

async fn read(engine: &Engine, name: &str) -> Result<MigrationRecord> {
    Ok(engine.migration(name).await?.record)
}
