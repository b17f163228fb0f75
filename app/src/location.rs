//! Where the page is and how it moves: the path and a query value, read from the request on the server and from
//! the address bar in the browser, redirects, and the tab links that change the address without a reload.

/// The path asked for: `/instance/async_migrations`.
pub fn path() -> String {
    #[cfg(feature = "hydrate")]
    {
        leptos::prelude::window().location().pathname().unwrap_or_default()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        request_address().0
    }
}

/// The value of `name` in the query string, decoded.
pub fn query_value(name: &str) -> Option<String> {
    #[cfg(feature = "hydrate")]
    let query = leptos::prelude::window().location().search().unwrap_or_default();
    #[cfg(not(feature = "hydrate"))]
    let query = request_address().1;
    value_in(&query, name).map(form_decoded)
}

/// `text` with `+` read as a space and each `%XX` as its byte, as forms and `url` write query values.
fn form_decoded(text: &str) -> String {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, after)) = rest.split_first() {
        let escaped = after.get(..2).and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (byte, escaped) {
            (b'%', Some(decoded)) => {
                bytes.push(decoded);
                rest = &after[2..];
                continue;
            }
            (b'+', _) => bytes.push(b' '),
            _ => bytes.push(byte),
        }
        rest = after;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The error of a plain form post to `path` that the server refused: it redirects back to the page with `__path`
/// and `__err` (the error as the server function encodes it, in base64) in the address, so the page can say it
/// with or without the WASM.
pub fn refused_form_post(path: &str) -> Option<crate::error::AppError> {
    let error = query_value("__err").filter(|_| query_value("__path").as_deref() == Some(path))?;
    Some(leptos::server_fn::error::ServerFnUrlError::<crate::error::AppError>::decode_err(&error))
}

/// The value of `name` in `query` (`?a=1&tab=audit` or `a=1&tab=audit`).
fn value_in<'query>(query: &'query str, name: &str) -> Option<&'query str> {
    query.trim_start_matches('?').split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// The path and the query string of the request being rendered (empty outside a request).
#[cfg(not(feature = "hydrate"))]
fn request_address() -> (String, String) {
    #[cfg(feature = "ssr")]
    if let Some(parts) = leptos::prelude::use_context::<axum::http::request::Parts>() {
        return (parts.uri.path().to_string(), parts.uri.query().unwrap_or_default().to_string());
    }
    (String::new(), String::new())
}

/// Sends the visitor to `path`: a 302 answer while the server renders the page, a new page load in the browser.
pub fn redirect(path: &str) {
    #[cfg(feature = "hydrate")]
    {
        let _ = leptos::prelude::window().location().set_href(path);
    }
    #[cfg(feature = "ssr")]
    leptos_axum::redirect(path);
    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    let _ = path;
}

/// Puts `href` in the address bar and the history without loading it: a tab link the page handles itself.
pub fn show_address(href: &str) {
    #[cfg(feature = "hydrate")]
    {
        if let Ok(history) = leptos::prelude::window().history() {
            let _ = history.push_state_with_url(&leptos::wasm_bindgen::JsValue::NULL, "", Some(href));
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = href;
}

#[cfg(test)]
mod tests {
    use super::value_in;

    #[test]
    fn a_query_value_is_found_by_its_name() {
        assert_eq!(value_in("?tab=settings", "tab"), Some("settings"));
        assert_eq!(value_in("a=1&tab=audit", "tab"), Some("audit"));
        assert_eq!(value_in("?tabs=audit", "tab"), None);
        assert_eq!(value_in("", "tab"), None);
    }

    #[test]
    fn query_values_are_form_decoded() {
        assert_eq!(super::form_decoded("wrong+email%20or%2Fpassword%E2%80%A6"), "wrong email or/password…");
        assert_eq!(super::form_decoded("100%"), "100%");
    }
}
