//! The one error type server functions return: safe to show to the user, never carrying database text.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// What a server function tells the browser when it fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// A database or other server-side failure; the details are in the server log.
    #[error("the server could not complete the request ({0}); the server log has the details")]
    Internal(String),
    /// The request never reached the server function, or its answer could not be read.
    #[error("request failed: {0}")]
    Transport(String),
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::Transport(value.to_string())
    }
}

#[cfg(feature = "ssr")]
impl From<engine::Error> for AppError {
    fn from(error: engine::Error) -> Self {
        leptos::logging::error!("server function failed: {error}");
        let what = match error {
            engine::Error::PostgresUnreachable { .. } | engine::Error::Postgres(_) | engine::Error::SchemaMigration(_) => {
                "Postgres"
            }
            engine::Error::ClickHouseUnreachable { .. } | engine::Error::ClickHouse(_) => "ClickHouse",
        };
        AppError::Internal(format!("{what} failed"))
    }
}
