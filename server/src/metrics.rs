//! `GET /metrics`: the engine's figures in Prometheus' text format, for a scraper that holds the bearer token
//! set in `AMIGO_METRICS_TOKEN`. Scrapers cannot log in, so the route does not take the staff session; without
//! a token configured it is off (404), since the figures name migrations and runner hosts.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::web::ServerState;
use crate::{Error, Result};

/// The shortest token `/metrics` accepts: anything shorter could be guessed.
pub const MIN_TOKEN_LENGTH: usize = 16;

/// The secret a scraper sends as `Authorization: Bearer <token>`.
#[derive(Clone)]
pub struct MetricsToken(String);

impl MetricsToken {
    pub fn new(token: &str) -> Result<MetricsToken> {
        if token.chars().count() < MIN_TOKEN_LENGTH || token.chars().any(|character| character.is_whitespace() || character.is_control()) {
            return Err(Error::Usage(format!(
                "AMIGO_METRICS_TOKEN must have at least {MIN_TOKEN_LENGTH} characters and no spaces (e.g. `openssl rand -hex 32`)"
            )));
        }
        Ok(MetricsToken(token.to_string()))
    }

    /// True when the request carries this token, compared in constant time.
    fn authorizes(&self, headers: &HeaderMap) -> bool {
        let Some(given) =
            headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()).and_then(|value| value.strip_prefix("Bearer "))
        else {
            return false;
        };
        let expected = self.0.as_bytes();
        let given = given.trim().as_bytes();
        expected.len() == given.len() && expected.iter().zip(given).fold(0, |difference, (a, b)| difference | (a ^ b)) == 0
    }
}

pub async fn metrics(State(state): State<ServerState>, headers: HeaderMap) -> Response {
    let Some(token) = &state.metrics_token else {
        return (StatusCode::NOT_FOUND, "/metrics is off: set AMIGO_METRICS_TOKEN to turn it on\n").into_response();
    };
    if !token.authorizes(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "/metrics needs Authorization: Bearer <AMIGO_METRICS_TOKEN>\n",
        )
            .into_response();
    }
    match state.engine.metrics().await {
        Ok(snapshot) => {
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], snapshot.to_prometheus_text()).into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read the metrics");
            (StatusCode::SERVICE_UNAVAILABLE, "cannot read the metrics from Postgres\n").into_response()
        }
    }
}
