//! Protection against cross-site requests: every request that can change something (any method but GET,
//! HEAD and OPTIONS) and the event stream must come from a page of this same site. Browsers say where a
//! request comes from in `Origin` (and `Sec-Fetch-Site`); requests without either are not from a browser
//! page and cannot carry a victim's cookie across sites, so they pass. The session cookie's SameSite=Lax is
//! the second line.

use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Refuses guarded requests that come from another site, with 403 and what happened.
pub async fn refuse_cross_site(request: Request, next: Next) -> Response {
    let guarded =
        !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) || request.uri().path() == app::live::EVENTS_PATH;
    if guarded && is_cross_site(request.headers()) {
        tracing::warn!(path = %request.uri().path(), "refused a cross-site request");
        return (StatusCode::FORBIDDEN, "cross-site request refused: this action must come from amigo's own page\n").into_response();
    }
    next.run(request).await
}

/// True when the browser says the request comes from a page of another origin.
pub fn is_cross_site(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(origin) = text(header::ORIGIN.as_str()) {
        let host = text("x-forwarded-host").or(text(header::HOST.as_str()));
        let origin_host = origin.split_once("://").map(|(_, authority)| authority.trim_end_matches('/'));
        return match (origin_host, host) {
            (Some(origin_host), Some(host)) => !origin_host.eq_ignore_ascii_case(host.trim()),
            _ => true,
        };
    }
    text("sec-fetch-site").is_some_and(|site| !matches!(site, "same-origin" | "none"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(name, value)| (header::HeaderName::from_static(name), HeaderValue::from_static(value))).collect()
    }

    #[test]
    fn same_origin_pages_and_non_browser_clients_pass() {
        assert!(!is_cross_site(&headers(&[("host", "amigo.example:3000"), ("origin", "http://amigo.example:3000")])));
        assert!(!is_cross_site(&headers(&[
            ("host", "internal:3000"),
            ("x-forwarded-host", "amigo.example"),
            ("origin", "https://amigo.example")
        ])));
        assert!(!is_cross_site(&headers(&[("host", "amigo.example"), ("sec-fetch-site", "same-origin")])));
        assert!(!is_cross_site(&headers(&[("host", "amigo.example")])));
    }

    #[test]
    fn other_sites_are_refused() {
        assert!(is_cross_site(&headers(&[("host", "amigo.example"), ("origin", "https://evil.example")])));
        assert!(is_cross_site(&headers(&[("host", "amigo.example"), ("origin", "null")])));
        assert!(is_cross_site(&headers(&[("host", "amigo.example"), ("sec-fetch-site", "cross-site")])));
        assert!(is_cross_site(&headers(&[("host", "amigo.example"), ("sec-fetch-site", "same-site")])));
    }
}
