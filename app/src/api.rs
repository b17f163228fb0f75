//! Server functions: each checks what it needs from the request, calls one engine verb, and maps the error.

use leptos::prelude::*;

use crate::error::AppError;

/// The engine handle, provided to every server function by the server's router.
#[cfg(feature = "ssr")]
fn engine() -> Result<engine::Engine, AppError> {
    use_context::<engine::Engine>().ok_or_else(|| AppError::Internal("engine missing from context".into()))
}

/// Reads the Postgres server's version string.
#[server(endpoint = "get_postgres_version")]
pub async fn get_postgres_version() -> Result<String, AppError> {
    Ok(engine()?.store().server_version().await?)
}

/// Reads the ClickHouse server's `version()`.
#[server(endpoint = "get_clickhouse_version")]
pub async fn get_clickhouse_version() -> Result<String, AppError> {
    Ok(engine()?.clickhouse().server_version().await?)
}
