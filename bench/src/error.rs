//! The benchmark's one error type: what failed, in words that say which database or command to look at.

/// Every failure a benchmark case reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] engine::Error),
    #[error("Postgres error: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("ClickHouse error: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("{command} failed: {message}")]
    Command { command: String, message: String },
    /// The case ran, but what it observed is not what it must be to give a figure (a copy lost rows, a
    /// migration errored, a wait ran out).
    #[error("{0}")]
    Unexpected(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
