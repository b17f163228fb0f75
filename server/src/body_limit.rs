//! Refuses request bodies larger than any of amigo's own requests (a login form, a server function's JSON
//! arguments) with 413 and a one-line reason, before any handler reads them.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The largest body amigo accepts: its biggest request, a start with every parameter at its longest, is a
/// few kilobytes.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

pub async fn refuse_oversized_bodies(request: Request, next: Next) -> Response {
    let declared_length = request.headers().get(header::CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return too_large(request.uri().path());
    }
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Err(_) => too_large(parts.uri.path()),
    }
}

fn too_large(path: &str) -> Response {
    tracing::warn!(%path, "refused a request body over {MAX_BODY_BYTES} bytes");
    (StatusCode::PAYLOAD_TOO_LARGE, format!("request body too large: amigo accepts at most {} KiB\n", MAX_BODY_BYTES / 1024))
        .into_response()
}
