//! The one error type server functions return: safe to show to the user, never carrying database text.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// What a server function tells the browser when it fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// The request was refused (bad name, status, parameter or setting); the text says why.
    #[error("{0}")]
    Refused(String),
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
        if error.is_refusal() {
            return AppError::Refused(error.to_string());
        }
        leptos::logging::error!("server function failed: {error}");
        let what = match error {
            engine::Error::PostgresUnreachable { .. } | engine::Error::Postgres(_) | engine::Error::SchemaMigration(_) => {
                "Postgres failed"
            }
            engine::Error::ClickHouseUnreachable { .. } | engine::Error::ClickHouse(_) | engine::Error::QueryTimeout { .. } => {
                "ClickHouse failed"
            }
            _ => "the engine failed",
        };
        AppError::Internal(what.into())
    }
}
