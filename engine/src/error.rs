//! The engine's one error type: what went wrong, worded for the operator who has to act on it.

/// Every failure the engine reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach Postgres at {url}: {source}. Is it running? Start the local one with `scripts/services start` or set AMIGO_DATABASE_URL.")]
    PostgresUnreachable { url: String, source: sqlx::Error },
    #[error("cannot reach ClickHouse at {url}: {message}. Is it running? Start the local one with `scripts/services start` or set AMIGO_CLICKHOUSE_URL.")]
    ClickHouseUnreachable { url: String, message: String },
    #[error("Postgres schema migration failed: {0}")]
    SchemaMigration(#[from] sqlx::migrate::MigrateError),
    #[error("Postgres error: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("ClickHouse error: {0}")]
    ClickHouse(#[from] ::clickhouse::error::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
