//! The HTTP surface in-process, against real databases: health, the server-rendered page, server functions.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use engine::Engine;
use http_body_util::BodyExt;
use leptos::prelude::LeptosOptions;
use server::web::{router, ServerState};
use tower::ServiceExt;

async fn test_router() -> axum::Router {
    let engine = Engine::connect(&engine::testing::fresh_databases().await).await.expect("connect");
    let leptos_options = LeptosOptions::builder().output_name("amigo").site_root("target/site").build();
    router(ServerState { leptos_options, engine })
}

async fn send(router: &axum::Router, request: Request<Body>) -> (StatusCode, String) {
    let response = router.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn healthz_answers_ok_when_both_databases_answer() {
    let router = test_router().await;
    let (status, body) = send(&router, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "ok\n");
}

#[tokio::test]
async fn the_staff_page_renders_both_versions_on_the_server() {
    let router = test_router().await;
    let (status, html) = send(&router, Request::get("/instance/async_migrations").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Async migrations"), "{html}");
    assert!(html.contains("PostgreSQL "), "Postgres version missing from the server-rendered page");
    assert!(html.contains("/pkg/amigo.js"), "hydration script missing");
}

#[tokio::test]
async fn server_functions_read_each_database() {
    let router = test_router().await;
    let post = |path: &str| {
        Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::empty())
            .unwrap()
    };
    let (status, body) = send(&router, post("/api/get_clickhouse_version")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let version: String = serde_json::from_str(&body).expect("a JSON string");
    assert!(version.split('.').all(|part| part.parse::<u32>().is_ok()), "{version}");

    let (status, body) = send(&router, post("/api/get_postgres_version")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("PostgreSQL"), "{body}");
}
