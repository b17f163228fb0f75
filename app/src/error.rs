//! The one error type server functions return: safe to show to the user, never carrying database text.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// What a server function tells the browser when it fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// No valid session: the request needs a login.
    #[error("you are not logged in (or your session ended); log in again")]
    LoginRequired,
    /// A valid session of an account that is not staff.
    #[error("this page is for staff accounts only; ask a staff member to give your account staff access")]
    StaffOnly,
    /// Too many failed logins; the text says when to try again.
    #[error("{0}")]
    TooManyAttempts(String),
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

impl AppError {
    /// The HTTP status a server function answers with when it fails this way.
    pub fn status_code(&self) -> u16 {
        match self {
            AppError::LoginRequired => 401,
            AppError::StaffOnly => 403,
            AppError::TooManyAttempts(_) => 429,
            AppError::Refused(_) => 400,
            AppError::Internal(_) | AppError::Transport(_) => 500,
        }
    }

    /// Sets the status of the server function's response to this error's (ssr). Left alone for requests that
    /// accept HTML: a page being rendered, or a plain form post, which is redirected back with the error.
    #[cfg(feature = "ssr")]
    pub fn respond(self) -> Self {
        use leptos::prelude::use_context;
        let accepts_html = use_context::<axum::http::request::Parts>()
            .and_then(|parts| parts.headers.get(axum::http::header::ACCEPT)?.to_str().ok().map(|accept| accept.contains("text/html")))
            .unwrap_or(false);
        if accepts_html {
            return self;
        }
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            if let Ok(status) = axum::http::StatusCode::from_u16(self.status_code()) {
                response.set_status(status);
            }
        }
        self
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        // On the server these mean the request's arguments could not be read: the caller's mistake, not ours.
        #[cfg(feature = "ssr")]
        if let ServerFnErrorErr::Deserialization(_) | ServerFnErrorErr::Args(_) | ServerFnErrorErr::MissingArg(_) = value {
            return AppError::Refused(format!("the request could not be read: {value}")).respond();
        }
        AppError::Transport(value.to_string())
    }
}

#[cfg(feature = "ssr")]
impl From<engine::Error> for AppError {
    fn from(error: engine::Error) -> Self {
        if let engine::Error::TooManyLoginAttempts { .. } = error {
            return AppError::TooManyAttempts(error.to_string()).respond();
        }
        if error.is_refusal() {
            return AppError::Refused(error.to_string()).respond();
        }
        leptos::logging::error!("server function failed: {error}");
        let what = match error {
            engine::Error::PostgresUnreachable { .. } | engine::Error::Postgres(_) | engine::Error::SchemaMigration(_) => "Postgres failed",
            engine::Error::ClickHouseUnreachable { .. } | engine::Error::ClickHouse(_) | engine::Error::QueryTimeout { .. } => {
                "ClickHouse failed"
            }
            _ => "the engine failed",
        };
        AppError::Internal(what.into()).respond()
    }
}
