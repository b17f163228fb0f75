//! The HTTP surface in-process, against real databases: health, the server-rendered pages, and the
//! server functions and event stream, each refusing anonymous, non-staff and cross-site requests itself.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use engine::accounts::Accounts;
use engine::definition::{MigrationDefinition, Operation};
use engine::parameters::ParameterSpec;
use engine::status::Status;
use engine::Engine;
use http_body_util::BodyExt;
use leptos::prelude::LeptosOptions;
use serde_json::{json, Value};
use server::web::{router, ServerState};
use tower::ServiceExt;

const HOST: &str = "amigo.test";
const MIGRATION: &str = "0001_copy_rows";
const PASSWORD: &str = "correct horse battery";

/// A router over fresh databases with one migration, a staff account and a non-staff account.
struct Site {
    router: axum::Router,
    engine: Engine,
    staff: String,
    viewer: String,
}

impl Site {
    async fn new() -> Site {
        let definition = MigrationDefinition::new(MIGRATION, "copies rows in batches")
            .parameter(ParameterSpec::integer("batch_size", "rows per batch", 1000, 1, 100_000))
            .operation(Operation::clickhouse("count to one", "SELECT 1", ""));
        let engine = Engine::connect(&engine::testing::fresh_databases().await, vec![definition]).await.expect("connect");
        let accounts = Accounts::of(&engine);
        let staff = accounts.create_user("admin@example.com", PASSWORD, false).await.unwrap();
        let viewer = accounts.create_user("viewer@example.com", PASSWORD, false).await.unwrap();
        assert!(staff.is_staff && !viewer.is_staff);
        let staff = accounts.create_session(&staff).await.unwrap().token;
        let viewer = accounts.create_session(&viewer).await.unwrap().token;
        let leptos_options = LeptosOptions::builder().output_name("amigo").site_root("target/site").build();
        Site { router: router(ServerState::new(leptos_options, engine.clone())), engine, staff, viewer }
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, String) {
        let response = self.router.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let body = response.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn status(&self) -> Status {
        self.engine.migration(MIGRATION).await.unwrap().record.status
    }
}

/// A same-site request from the page, with the session cookie when `token` is given.
fn request(method: &str, path: &str, token: Option<&str>) -> axum::http::request::Builder {
    let builder = Request::builder().method(method).uri(path).header(header::HOST, HOST).header(header::ORIGIN, format!("http://{HOST}"));
    match token {
        Some(token) => builder.header(header::COOKIE, format!("amigo_session={token}")),
        None => builder,
    }
}

/// A server function call with a JSON body.
fn call(endpoint: &str, body: Value, token: Option<&str>) -> Request<Body> {
    request("POST", &format!("/api/{endpoint}"), token)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn login_form(email: &str, password: &str) -> Request<Body> {
    request("POST", "/api/login", None)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("email={}&password={}", email.replace('@', "%40"), password.replace(' ', "+"))))
        .unwrap()
}

/// Every server function open to staff only, with arguments that would change something.
fn staff_calls() -> Vec<(&'static str, Value)> {
    vec![
        ("list_migrations", json!({})),
        ("start_migration", json!({ "name": MIGRATION, "parameters": {} })),
        ("stop_migration", json!({ "name": MIGRATION, "rollback": true })),
        ("rollback_migration", json!({ "name": MIGRATION })),
        ("resume_migration", json!({ "name": MIGRATION })),
        ("pause_migration", json!({ "name": MIGRATION, "pause": true })),
        ("adjust_migration", json!({ "name": MIGRATION, "parameters": { "batch_size": "5" } })),
        ("mark_migration", json!({ "name": MIGRATION, "completed": true, "reason": "by hand" })),
        ("cut_over_migration", json!({ "name": MIGRATION })),
        ("finalize_migration", json!({ "name": MIGRATION })),
        ("get_migration_errors", json!({ "name": MIGRATION })),
        ("plan_migration", json!({ "name": MIGRATION, "parameters": {} })),
        ("get_migration_details", json!({ "name": MIGRATION })),
        ("get_settings", json!({})),
        ("update_setting", json!({ "key": "auto_start", "value": true })),
        ("get_audit_log", json!({})),
        ("get_notifications", json!({})),
        ("send_test_notification", json!({})),
        ("get_upgrade_status", json!({})),
    ]
}

/// The server functions anyone may call: logging in and out, and asking who is logged in.
const PUBLIC_SERVER_FUNCTIONS: [&str; 3] = ["current_user", "login", "logout"];

/// Every server function the binary registers is either public on purpose or in [`staff_calls`], which the
/// test below calls anonymously and as non-staff: a new one cannot escape it.
#[test]
fn every_registered_server_function_is_public_on_purpose_or_checked_as_staff_only() {
    let mut registered: Vec<String> =
        leptos::server_fn::axum::server_fn_paths().map(|(path, _)| path.strip_prefix("/api/").unwrap_or(path).to_string()).collect();
    registered.sort();
    let mut known: Vec<String> =
        staff_calls().into_iter().map(|(endpoint, _)| endpoint.to_string()).chain(PUBLIC_SERVER_FUNCTIONS.map(String::from)).collect();
    known.sort();
    assert_eq!(registered, known);
}

#[tokio::test]
async fn healthz_answers_ok_when_both_databases_answer() {
    let site = Site::new().await;
    let (status, body) = site.send(request("GET", "/healthz", None).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "ok\n");
}

#[tokio::test]
async fn every_server_function_refuses_anonymous_and_non_staff_requests_and_changes_nothing() {
    let site = Site::new().await;
    for (endpoint, body) in staff_calls() {
        let (status, answer) = site.send(call(endpoint, body.clone(), None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{endpoint} without a session: {answer}");
        assert!(answer.contains("LoginRequired"), "{endpoint}: {answer}");
        let (status, answer) = site.send(call(endpoint, body.clone(), Some("forged-token"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{endpoint} with a forged session: {answer}");
        let (status, answer) = site.send(call(endpoint, body, Some(&site.viewer))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{endpoint} as non-staff: {answer}");
        assert!(answer.contains("StaffOnly"), "{endpoint}: {answer}");
    }
    assert_eq!(site.status().await, Status::NotStarted);
    assert!(!site.engine.settings().await.unwrap().auto_start);
    assert!(site.engine.audit_log(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_event_stream_refuses_anonymous_non_staff_and_cross_site_requests() {
    let site = Site::new().await;
    let (status, _) = site.send(request("GET", "/api/events", None).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = site.send(request("GET", "/api/events", Some(&site.viewer)).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let cross_site = Request::get("/api/events")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, "https://evil.example")
        .header(header::COOKIE, format!("amigo_session={}", site.staff))
        .body(Body::empty())
        .unwrap();
    assert_eq!(site.send(cross_site).await.0, StatusCode::FORBIDDEN);
}

/// The next server-sent event's text, waiting at most 10 s.
async fn next_event(body: &mut Body) -> String {
    let mut text = String::new();
    while !text.contains("\n\n") {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame()).await.expect("an event within 10 s");
        let frame = frame.expect("the stream is open").expect("a frame");
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    text
}

#[tokio::test]
async fn the_event_stream_sends_a_snapshot_then_each_change() {
    let site = Site::new().await;
    let response: Response<Body> =
        site.router.clone().oneshot(request("GET", "/api/events", Some(&site.staff)).body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = response.into_body();
    let snapshot = next_event(&mut body).await;
    assert!(snapshot.starts_with("event: snapshot\n"), "{snapshot}");
    assert!(snapshot.contains(&format!("\"name\":\"{MIGRATION}\"")), "{snapshot}");
    assert!(snapshot.contains("\"allowed_actions\":[\"start\"]"), "{snapshot}");

    let changed = std::time::Instant::now();
    site.engine.start(MIGRATION, "admin@example.com", &serde_json::Map::new()).await.unwrap();
    let change = next_event(&mut body).await;
    assert!(changed.elapsed() < Duration::from_millis(500), "the change took {:?} to arrive", changed.elapsed());
    assert!(change.starts_with("event: migration\n"), "{change}");
    assert!(change.contains("\"status\":\"starting\""), "{change}");
}

#[tokio::test]
async fn a_cross_site_post_is_refused_even_with_a_staff_session() {
    let site = Site::new().await;
    let mut forged = call("start_migration", json!({ "name": MIGRATION, "parameters": {} }), Some(&site.staff));
    forged.headers_mut().insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    let (status, body) = site.send(forged).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("cross-site request refused"), "{body}");
    let mut forged_login = login_form("admin@example.com", PASSWORD);
    forged_login.headers_mut().remove(header::ORIGIN);
    forged_login.headers_mut().insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(site.send(forged_login).await.0, StatusCode::FORBIDDEN);
    assert_eq!(site.status().await, Status::NotStarted);
    assert!(site.engine.audit_log(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn staff_can_start_and_stop_and_every_answer_is_the_new_row() {
    let site = Site::new().await;
    let (status, body) = site.send(call("list_migrations", json!({}), Some(&site.staff))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(rows[0]["parameters"][0]["default_value"], "1000");

    let start = json!({ "name": MIGRATION, "parameters": { "batch_size": "250" } });
    let (status, body) = site.send(call("start_migration", start, Some(&site.staff))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let row: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((&row["status"], &row["phase"]), (&json!("starting"), &json!("queued")));
    assert_eq!(row["allowed_actions"], json!(["pause", "stop", "stop_and_rollback"]));

    // No runner here: the stop catches it before any runner claimed it.
    let (status, body) = site.send(call("stop_migration", json!({ "name": MIGRATION, "rollback": false }), Some(&site.staff))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["status"], "errored");
    let (_, body) = site.send(call("get_migration_errors", json!({ "name": MIGRATION }), Some(&site.staff))).await;
    assert!(body.contains("stopped by admin@example.com before it started"), "{body}");
    let (_, body) = site.send(call("get_audit_log", json!({}), Some(&site.staff))).await;
    let audit: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(audit[0]["action"], "stop");
    assert_eq!(audit[1]["actor"], "admin@example.com");
    assert_eq!(audit[1]["details"], "{\"batch_size\":250}");
}

#[tokio::test]
async fn bad_parameters_and_settings_are_refused_clearly_and_change_nothing() {
    let site = Site::new().await;
    let start = json!({ "name": MIGRATION, "parameters": { "batch_size": "0" } });
    let (status, body) = site.send(call("start_migration", start, Some(&site.staff))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let refusal: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refusal["Refused"], format!("parameter batch_size of {MIGRATION}: 0 is out of range: it must be from 1 to 100000"));
    let unknown = json!({ "name": MIGRATION, "parameters": { "colour": "red" } });
    let (status, body) = site.send(call("start_migration", unknown, Some(&site.staff))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("has no parameter \\\"colour\\\"; it takes: batch_size"), "{body}");
    let (status, body) = site.send(call("rollback_migration", json!({ "name": MIGRATION }), Some(&site.staff))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("cannot roll back 0001_copy_rows: it is not started"), "{body}");
    let (status, body) =
        site.send(call("update_setting", json!({ "key": "rollback_timeout_seconds", "value": 0 }), Some(&site.staff))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("out of range"), "{body}");

    assert_eq!(site.status().await, Status::NotStarted);
    assert_eq!(site.engine.settings().await.unwrap(), untouched_settings());
    assert!(site.engine.audit_log(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn login_sets_a_protected_cookie_and_logout_ends_the_session() {
    let site = Site::new().await;
    let response = site.router.clone().oneshot(login_form("Admin@Example.com", PASSWORD)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::LOCATION], "/instance/async_migrations");
    let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(cookie.starts_with("amigo_session="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(!cookie.contains("Secure"), "plain http must not get a Secure cookie: {cookie}");
    let token = cookie.trim_start_matches("amigo_session=").split(';').next().unwrap().to_string();
    assert_eq!(site.send(call("list_migrations", json!({}), Some(&token))).await.0, StatusCode::OK);

    let (status, _) = site.send(request("POST", "/api/logout", Some(&token)).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(site.send(call("list_migrations", json!({}), Some(&token))).await.0, StatusCode::UNAUTHORIZED);

    let mut over_https = login_form("admin@example.com", PASSWORD);
    over_https.headers_mut().insert("x-forwarded-proto", "https".parse().unwrap());
    let response = site.router.clone().oneshot(over_https).await.unwrap();
    assert!(response.headers()[header::SET_COOKIE].to_str().unwrap().contains("; Secure"));
}

#[tokio::test]
async fn failed_logins_are_refused_then_rate_limited() {
    let site = Site::new().await;
    for _ in 0..engine::accounts::MAX_FAILURES_PER_EMAIL {
        let (status, body) = site.send(login_form("admin@example.com", "not the password")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains("wrong email or password"), "{body}");
    }
    let (status, body) = site.send(login_form("admin@example.com", PASSWORD)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body.contains("too many failed logins; try again in 15 minutes"), "{body}");
}

#[tokio::test]
async fn a_plain_form_login_redirects_like_a_browser_expects() {
    let site = Site::new().await;
    let mut form = login_form("admin@example.com", PASSWORD);
    form.headers_mut().insert(header::ACCEPT, "text/html".parse().unwrap());
    form.headers_mut().insert(header::REFERER, format!("http://{HOST}/login").parse().unwrap());
    let response = site.router.clone().oneshot(form).await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()[header::LOCATION], "/instance/async_migrations");

    let mut wrong = login_form("admin@example.com", "wrong password");
    wrong.headers_mut().insert(header::ACCEPT, "text/html".parse().unwrap());
    wrong.headers_mut().insert(header::REFERER, format!("http://{HOST}/login").parse().unwrap());
    let response = site.router.clone().oneshot(wrong).await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let back = response.headers()[header::LOCATION].to_str().unwrap();
    assert!(back.starts_with(&format!("http://{HOST}/login?")) && back.contains("__err="), "{back}");
}

#[tokio::test]
async fn the_staff_page_is_server_rendered_for_staff_only() {
    let site = Site::new().await;
    let page = |token: Option<&str>| {
        request("GET", "/instance/async_migrations", token).header(header::ACCEPT, "text/html").body(Body::empty()).unwrap()
    };

    let response = site.router.clone().oneshot(page(None)).await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND, "anonymous visitors go to the login page");
    assert_eq!(response.headers()[header::LOCATION], "/login");

    let (status, html) = site.send(page(Some(&site.viewer))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Staff only") && html.contains("viewer@example.com"), "{html}");
    assert!(!html.contains(MIGRATION), "a non-staff page must not list migrations");

    let (status, html) = site.send(page(Some(&site.staff))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&format!("data-migration=\"{MIGRATION}\"")), "the table is in the server-rendered HTML: {html}");
    assert!(html.contains("copies rows in batches"), "{html}");
    assert!(html.contains("/pkg/amigo.js"), "hydration script missing");

    let (status, html) = site.send(request("GET", "/login", None).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("action=\"/api/login\""), "the login form posts without WASM: {html}");
}

/// Every staff request, with the session cookie `token`: the server functions, the page and the event stream.
fn every_staff_request(token: &str) -> Vec<(String, Request<Body>)> {
    let mut requests: Vec<(String, Request<Body>)> =
        staff_calls().into_iter().map(|(endpoint, body)| (endpoint.to_string(), call(endpoint, body, Some(token)))).collect();
    requests.push(("event stream".into(), request("GET", "/api/events", Some(token)).body(Body::empty()).unwrap()));
    requests
}

#[tokio::test]
async fn an_expired_or_forged_session_is_refused_everywhere_and_changes_nothing() {
    let site = Site::new().await;
    let forged = [
        "forged-token".to_string(),
        "A".repeat(64),
        format!("{}x", site.staff),
        site.staff.to_uppercase(),
        "' OR '1'='1".to_string(),
        "%00".to_string(),
    ];
    for token in &forged {
        for (what, request) in every_staff_request(token) {
            let (status, body) = site.send(request).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} with the forged session {token:?}: {body}");
        }
    }

    assert_eq!(site.send(call("list_migrations", json!({}), Some(&site.staff))).await.0, StatusCode::OK);
    let expired = sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 second'")
        .execute(site.engine.store().pool())
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(expired, 2);
    for (what, request) in every_staff_request(&site.staff) {
        let (status, body) = site.send(request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} with an expired session: {body}");
    }
    let page =
        request("GET", "/instance/async_migrations", Some(&site.staff)).header(header::ACCEPT, "text/html").body(Body::empty()).unwrap();
    let response = site.router.clone().oneshot(page).await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND, "an expired session sees the login page");
    assert_eq!(response.headers()[header::LOCATION], "/login");

    assert_eq!(site.status().await, Status::NotStarted);
    assert!(!site.engine.settings().await.unwrap().auto_start);
    assert!(site.engine.audit_log(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn hostile_names_and_values_are_refused_clearly_and_change_nothing() {
    let site = Site::new().await;
    let names = ["0009_missing", "0001_copy_rows'; DROP TABLE async_migration; --", "", "../../etc/passwd", "0001_copy_rows\u{0}", "ü🦀"];
    for name in names {
        for (endpoint, body) in [
            ("start_migration", json!({ "name": name, "parameters": {} })),
            ("stop_migration", json!({ "name": name, "rollback": true })),
            ("rollback_migration", json!({ "name": name })),
            ("resume_migration", json!({ "name": name })),
            ("get_migration_errors", json!({ "name": name })),
        ] {
            let (status, answer) = site.send(call(endpoint, body, Some(&site.staff))).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{endpoint} {name:?}: {answer}");
            assert!(answer.contains("no migration named"), "{endpoint} {name:?}: {answer}");
        }
    }
    let refused_parameters = [
        (json!({ "batch_size": "1; DROP TABLE async_migration" }), "is not a whole number"),
        (json!({ "batch_size": "250' OR '1'='1" }), "is not a whole number"),
        (json!({ "batch_size": true }), "true is not a whole number"),
        (json!({ "batch_size": [250] }), "is not a whole number"),
        (json!({ "batch_size": { "$gt": 0 } }), "is not a whole number"),
        (json!({ "batch_size": 1.5 }), "is not a whole number"),
        (json!({ "batch_size": 1e300 }), "is not a whole number"),
        (json!({ "batch_size": -1 }), "out of range"),
        (json!({ "batch_size": 9_223_372_036_854_775_807_i64 }), "out of range"),
        (json!({ "batch_size; DROP TABLE async_migration": 1 }), "has no parameter"),
    ];
    for (parameters, expected) in refused_parameters {
        let (status, answer) =
            site.send(call("start_migration", json!({ "name": MIGRATION, "parameters": parameters }), Some(&site.staff))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{parameters}: {answer}");
        assert!(answer.contains(expected), "{parameters}: {answer}");
    }
    let refused_settings = [
        json!({ "key": "auto_start", "value": "true; DROP TABLE runtime_setting" }),
        json!({ "key": "auto_start", "value": 1 }),
        json!({ "key": "rollback_timeout_seconds", "value": "60" }),
        json!({ "key": "rollback_timeout_seconds", "value": -60 }),
        json!({ "key": "rollback_timeout_seconds", "value": 1e20 }),
        json!({ "key": "auto_start'; DROP TABLE runtime_setting; --", "value": true }),
    ];
    for body in refused_settings {
        let (status, answer) = site.send(call("update_setting", body.clone(), Some(&site.staff))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(answer.contains("setting"), "{body}: {answer}");
    }
    // Arguments of the wrong shape never reach the engine: the body is refused as it is read.
    let malformed = [
        json!({ "name": 1, "parameters": {} }),
        json!({ "name": MIGRATION, "parameters": "batch_size=250" }),
        json!({ "name": MIGRATION }),
        json!([MIGRATION]),
    ];
    for body in malformed {
        let (status, answer) = site.send(call("start_migration", body.clone(), Some(&site.staff))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(answer.contains("the request could not be read"), "{body}: {answer}");
    }
    let not_json = request("POST", "/api/start_migration", Some(&site.staff))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"name\": \"0001_copy_rows\", \"parameters\": {"))
        .unwrap();
    let (status, answer) = site.send(not_json).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer.contains("the request could not be read"), "{answer}");

    assert_eq!(site.status().await, Status::NotStarted);
    assert_eq!(site.engine.settings().await.unwrap(), untouched_settings());
    assert!(site.engine.audit_log(10).await.unwrap().is_empty());
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_name IN ('async_migration', 'runtime_setting')")
            .fetch_one(site.engine.store().pool())
            .await
            .unwrap();
    assert_eq!(tables, 2);
}

#[tokio::test]
async fn a_ten_megabyte_body_is_refused_and_changes_nothing() {
    let site = Site::new().await;
    let huge_text = "x".repeat(10 * 1024 * 1024);
    let requests = [
        call("start_migration", json!({ "name": MIGRATION, "parameters": { "batch_size": 250, "padding": huge_text } }), Some(&site.staff)),
        call("update_setting", json!({ "key": "auto_start", "value": huge_text }), Some(&site.staff)),
        call("start_migration", json!({ "name": huge_text, "parameters": {} }), Some(&site.staff)),
        login_form("admin@example.com", &huge_text),
        call("list_migrations", json!({ "padding": huge_text }), None),
    ];
    for request in requests {
        let path = request.uri().path().to_string();
        let (status, answer) = site.send(request).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {}", &answer[..answer.len().min(300)]);
        assert!(answer.len() < 1000, "{path}: the refusal does not echo the body");
    }
    assert_eq!(site.status().await, Status::NotStarted);
    assert_eq!(site.engine.settings().await.unwrap(), untouched_settings());
    assert!(site.engine.audit_log(10).await.unwrap().is_empty());
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM login_attempts").fetch_one(site.engine.store().pool()).await.unwrap();
    assert_eq!(attempts, 0, "the refused login was never tried");
}

/// The settings of a fresh test database: the defaults, with the free-disk check off (`engine::testing`).
fn untouched_settings() -> engine::settings::RuntimeSettings {
    engine::settings::RuntimeSettings { min_free_disk_percent: 0, ..engine::settings::RuntimeSettings::default() }
}
