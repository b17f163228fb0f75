//! The session cookie: reading it from a request, writing it at login and logout, and the staff check that
//! every server function and the event stream make themselves.

use axum::http::{header, HeaderMap};
use engine::accounts::{Accounts, User};
use engine::Engine;

use crate::error::AppError;

/// The cookie holding the session token.
pub const SESSION_COOKIE: &str = "amigo_session";

/// The session token the request carries, if any.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|cookie| cookie.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, token)| token.to_string())
        .filter(|token| !token.is_empty())
}

/// True when the browser reached us over https, directly or through a proxy that says so.
pub fn is_https(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers.get("x-forwarded-proto").and_then(|value| value.to_str().ok());
    let forwarded = headers.get(header::FORWARDED).and_then(|value| value.to_str().ok());
    forwarded_proto.is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
        || forwarded.is_some_and(|value| value.to_ascii_lowercase().contains("proto=https"))
}

/// The `Set-Cookie` value that stores `token` for `max_age_seconds` (0 deletes the cookie).
pub fn session_cookie(token: &str, max_age_seconds: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_seconds}{secure}")
}

/// The user whose session the request carries, if the session is valid.
pub async fn request_user(engine: &Engine, headers: &HeaderMap) -> Result<Option<User>, engine::Error> {
    match session_token(headers) {
        Some(token) => Accounts::of(engine).session_user(&token).await,
        None => Ok(None),
    }
}

/// The staff user making the request: [`AppError::LoginRequired`] without a valid session,
/// [`AppError::StaffOnly`] for other accounts.
pub async fn staff_user(engine: &Engine, headers: &HeaderMap) -> Result<User, AppError> {
    match request_user(engine, headers).await? {
        Some(user) if user.is_staff => Ok(user),
        Some(_) => Err(AppError::StaffOnly),
        None => Err(AppError::LoginRequired),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_token_is_found_among_other_cookies() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("theme=dark; amigo_session=abc123; other=1"));
        assert_eq!(session_token(&headers).as_deref(), Some("abc123"));
        headers.insert(header::COOKIE, HeaderValue::from_static("amigo_session_old=x; amigo_session="));
        assert_eq!(session_token(&headers), None);
    }

    #[test]
    fn the_cookie_is_http_only_same_site_and_secure_only_over_https() {
        let mut headers = HeaderMap::new();
        assert!(!is_https(&headers));
        assert_eq!(session_cookie("t", 60, false), "amigo_session=t; Path=/; HttpOnly; SameSite=Lax; Max-Age=60");
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(is_https(&headers));
        assert!(session_cookie("t", 60, true).ends_with("; Secure"));
    }
}
