//! `GET /metrics` in-process against real databases: off without a token, refused without the right one, and
//! after a real run of 0001 and a stopped run, the figures Postgres holds.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use demo::migrations::events_sort_key;
use demo::{seed, SeedRequest};
use engine::definition::{nothing_to_undo, MigrationDefinition, Operation};
use engine::status::Status;
use engine::testing::{is_settled, spawn_runner, wait_for};
use engine::Engine;
use http_body_util::BodyExt;
use leptos::prelude::LeptosOptions;
use server::metrics::MetricsToken;
use server::web::{router, ServerState};
use tower::ServiceExt;

const TOKEN: &str = "a-scraper-token-of-some-length";
const SLOW: &str = "0100_waits_until_stopped";
const SEEDED_EVENTS: u64 = 20_000;

fn slow_definition() -> MigrationDefinition {
    MigrationDefinition::new(SLOW, "waits until it is stopped").operation(Operation::rust(
        "wait",
        |_context| async {
            tokio::time::sleep(Duration::from_secs(600)).await;
            Ok(())
        },
        nothing_to_undo,
    ))
}

async fn scrape(router: &axum::Router, authorization: Option<&str>) -> (StatusCode, String) {
    let mut request = Request::get("/metrics").header(header::HOST, "amigo.test");
    if let Some(authorization) = authorization {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    let response = router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The value of the sample whose name and labels are exactly `series`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_are_off_without_a_token_and_refused_without_the_right_one() {
    let engine = Engine::connect(&engine::testing::fresh_databases().await, vec![slow_definition()]).await.unwrap();
    let options = LeptosOptions::builder().output_name("amigo").build();
    let off = router(ServerState::new(options.clone(), engine.clone()));
    let (status, body) = scrape(&off, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("AMIGO_METRICS_TOKEN"), "{body}");

    let on = router(ServerState::new(options, engine).with_metrics_token(MetricsToken::new(TOKEN).unwrap()));
    for authorization in [None, Some("Bearer wrong-token-of-the-same-len"), Some(TOKEN), Some(&*format!("Basic {TOKEN}"))] {
        let (status, body) = scrape(&on, authorization).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}: {body}");
        assert!(!body.contains("amigo_migrations"), "{body}");
    }
    assert!(MetricsToken::new("short").is_err());
    assert!(MetricsToken::new("sixteen chars with spaces").is_err());
}

#[tokio::test]
async fn metrics_report_a_real_run_a_stopped_run_and_the_runner_heartbeat() {
    let mut config = engine::testing::fresh_databases().await;
    config.lease_timeout = Duration::from_secs(2);
    let engine = Engine::connect(&config, vec![events_sort_key::definition(), slow_definition()]).await.unwrap();
    seed(engine.clickhouse(), &SeedRequest::new(SEEDED_EVENTS)).await.unwrap();
    let options = LeptosOptions::builder().output_name("amigo").build();
    let site = router(ServerState::new(options, engine.clone()).with_metrics_token(MetricsToken::new(TOKEN).unwrap()));
    let bearer = format!("Bearer {TOKEN}");
    let _runner = spawn_runner(&engine);

    engine.start(events_sort_key::NAME, "tester", &serde_json::Map::new()).await.unwrap();
    let done = wait_for(&engine, events_sort_key::NAME, Duration::from_secs(120), "settled", is_settled).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(events_sort_key::NAME).await);

    engine.start(SLOW, "tester", &serde_json::Map::new()).await.unwrap();
    wait_for(&engine, SLOW, Duration::from_secs(10), "running", |overview| overview.record.status == Status::Running).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, text) = scrape(&site, Some(&bearer)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("# TYPE amigo_migrations gauge"), "{text}");
    assert_eq!(value(&text, "amigo_migrations{status=\"completed\"}"), Some(1.0), "{text}");
    assert_eq!(value(&text, "amigo_migrations{status=\"running\"}"), Some(1.0), "{text}");
    assert_eq!(value(&text, "amigo_migrations{status=\"errored\"}"), Some(0.0), "{text}");
    assert_eq!(value(&text, &format!("amigo_migration_phase{{migration=\"{SLOW}\",phase=\"running\"}}")), Some(1.0), "{text}");
    let copied = format!("amigo_migration_rows_copied{{migration=\"{}\"}}", events_sort_key::NAME);
    assert_eq!(value(&text, &copied), Some(SEEDED_EVENTS as f64), "{text}");
    assert_eq!(value(&text, &format!("amigo_migration_progress_percent{{migration=\"{}\"}}", events_sort_key::NAME)), Some(100.0));
    for operation in 0..done.operation_count {
        let series = format!("amigo_operation_duration_seconds{{migration=\"{}\",operation=\"{operation}\"}}", events_sort_key::NAME);
        let seconds = value(&text, &series).unwrap_or_else(|| panic!("no {series} in {text}"));
        assert!((0.0..120.0).contains(&seconds), "{series} {seconds}");
    }
    let lease = text
        .lines()
        .find(|line| line.starts_with("amigo_runner_heartbeat_age_seconds{") && line.contains(&format!("migration=\"{SLOW}\"")))
        .unwrap_or_else(|| panic!("no heartbeat of the running migration in {text}"));
    let age: f64 = lease.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((0.0..2.0).contains(&age), "a live runner's heartbeat is younger than the lease timeout: {lease}");

    engine.stop(SLOW, "tester", false).await.unwrap();
    wait_for(&engine, SLOW, Duration::from_secs(10), "settled", is_settled).await;
    let (_, text) = scrape(&site, Some(&bearer)).await;
    assert_eq!(value(&text, "amigo_migrations{status=\"errored\"}"), Some(1.0), "{text}");
    assert_eq!(value(&text, &format!("amigo_migration_errors_total{{migration=\"{SLOW}\"}}")), Some(1.0), "{text}");
    assert_eq!(value(&text, &format!("amigo_migration_status{{migration=\"{SLOW}\",status=\"errored\"}}")), Some(1.0), "{text}");
    assert!(!text.contains("amigo_runner_heartbeat_age_seconds{"), "the lease is released: {text}");
}
