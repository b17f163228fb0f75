//! The browser bundle compiled into the binary (feature `embedded-site`): `target/site` as `scripts/build` left
//! it, `pkg/` with its brotli and gzip copies and the public files, served from memory so that a release
//! `amigo` needs no folder beside it. `scripts/release --check` tests it on the release binary alone in a folder.

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use include_dir::{include_dir, Dir};
use leptos::prelude::LeptosOptions;

/// `target/site` at compile time (`scripts/release` builds it first).
static SITE: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../target/site");

/// The precompressed copies `scripts/build` writes, best first: the file's name plus the suffix.
const ENCODINGS: [(&str, &str); 2] = [("br", ".br"), ("gzip", ".gz")];

/// A file of the bundle, compressed as the browser accepts; any other path gets the app's own "not found" page,
/// with status 404 unless the app set another (a redirect), as `leptos_axum::file_and_error_handler` does.
pub async fn files_or_page(State(options): State<LeptosOptions>, request: Request<Body>) -> Response {
    if let Some(response) = file(request.uri().path(), request.headers()) {
        return response;
    }
    let mut response = leptos_axum::render_app_to_stream(move || app::shell(options.clone()))(request).await.into_response();
    if response.status() == StatusCode::OK {
        *response.status_mut() = StatusCode::NOT_FOUND;
    }
    response
}

/// The embedded file at `path`, as its brotli or gzip copy when the request accepts one.
pub fn file(path: &str, headers: &HeaderMap) -> Option<Response> {
    let path = path.trim_start_matches('/');
    let plain = SITE.get_file(path)?;
    let content_type = mime_guess::from_path(path).first_or_octet_stream();
    let (encoding, contents) = ENCODINGS
        .iter()
        .filter(|(encoding, _)| accepts(headers, encoding))
        .find_map(|(encoding, suffix)| Some((Some(*encoding), SITE.get_file(format!("{path}{suffix}"))?.contents())))
        .unwrap_or((None, plain.contents()));
    let mut response = Body::from(contents).into_response();
    let response_headers = response.headers_mut();
    response_headers.insert(CONTENT_TYPE, HeaderValue::from_str(content_type.as_ref()).ok()?);
    response_headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    if let Some(encoding) = encoding {
        response_headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    Some(response)
}

/// True when `Accept-Encoding` names `encoding` without `q=0`.
fn accepts(headers: &HeaderMap, encoding: &str) -> bool {
    headers.get_all(ACCEPT_ENCODING).iter().filter_map(|value| value.to_str().ok()).flat_map(|value| value.split(',')).any(|item| {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or_default().trim();
        let quality = parts.find_map(|part| part.trim().strip_prefix("q=")).map(|q| q.trim().parse::<f32>().unwrap_or(0.0));
        name.eq_ignore_ascii_case(encoding) && quality.is_none_or(|q| q > 0.0)
    })
}
