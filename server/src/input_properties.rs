//! What the server's readers of request headers must keep, whatever bytes a client sends: the session cookie
//! reader never panics and reads back exactly the token the server set, whatever other cookies surround it;
//! the cross-site check never panics and refuses every `Origin` whose host is not the request's. The fuzz
//! target `request_headers` under `fuzz/` feeds these checks; `tests/fuzz_seeds.rs` replays its seed corpus
//! through them in every test run. Each check panics when a property is broken.

use axum::http::{header, HeaderMap, HeaderValue};

use crate::same_origin::is_cross_site;

/// Lines of `name: value` headers. Every `Cookie` header goes to the session reader as it is, then again
/// around a token the server could have set; `Host`, `Origin` and `X-Forwarded-Host` go to the cross-site check.
pub fn request_headers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut headers = HeaderMap::new();
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (Ok(name), Ok(value)) = (header::HeaderName::from_bytes(name.trim().as_bytes()), HeaderValue::from_str(value.trim())) else {
            continue;
        };
        headers.append(name, value);
    }
    session_cookie(&headers);
    same_origin(&headers);
}

fn session_cookie(headers: &HeaderMap) {
    if let Some(token) = app::session::session_token(headers) {
        assert!(!token.is_empty() && !token.contains(';'), "read {token:?} from {headers:?}");
    }
    // The token the server sets, among whatever other cookies the browser sends, is read back exactly.
    let token = "Zm9vYmFyLXNlc3Npb24tdG9rZW4";
    let set_cookie = app::session::session_cookie(token, 60, false);
    let pair = set_cookie.split(';').next().expect("a cookie pair");
    for other in headers.get_all(header::COOKIE).iter().filter_map(|value| value.to_str().ok()) {
        let other = other.trim().trim_end_matches(';');
        if other.split(';').any(|cookie| cookie.trim().starts_with(&format!("{}=", app::session::SESSION_COOKIE))) {
            continue; // another session cookie first would rightly win
        }
        let mut sent = HeaderMap::new();
        for cookies in [format!("{other}; {pair}"), format!("{pair}; {other}")] {
            let Ok(value) = HeaderValue::from_str(&cookies) else { continue };
            sent.insert(header::COOKIE, value);
            assert_eq!(app::session::session_token(&sent).as_deref(), Some(token), "{cookies:?}");
        }
    }
}

fn same_origin(headers: &HeaderMap) {
    is_cross_site(headers);
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let Some(host) = text("x-forwarded-host").or(text(header::HOST.as_str())).map(str::trim) else { return };
    // A page of this very host passes, over http or https.
    let plausible = !host.is_empty() && host.chars().all(|character| character.is_ascii_alphanumeric() || ".-:[]".contains(character));
    for scheme in ["http", "https"] {
        let mut own = headers.clone();
        own.insert(header::ORIGIN, HeaderValue::from_str(&format!("{scheme}://{host}")).expect("a plausible host is a header value"));
        assert!(!plausible || !is_cross_site(&own), "a page of {host:?} itself was refused");
    }
    // A page of another host is refused, however the request names this one.
    let mut forged = headers.clone();
    forged.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
    if !host.eq_ignore_ascii_case("evil.example") {
        assert!(is_cross_site(&forged), "a page of evil.example passed as {host:?}");
    }
}
