//! The web server: the Leptos pages and server functions, `/healthz`, static files, graceful shutdown.

use anyhow::Context;
use app::{shell, App};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use engine::Engine;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tower_http::compression::CompressionLayer;

use crate::cli::{ServeArgs, Settings};

/// What every handler can reach.
#[derive(Clone, axum::extract::FromRef)]
pub struct ServerState {
    pub leptos_options: LeptosOptions,
    pub engine: Engine,
}

/// Connects to the databases, then serves until Ctrl-C or SIGTERM.
pub async fn serve(settings: &Settings, args: &ServeArgs) -> anyhow::Result<()> {
    let engine = Engine::connect(&settings.engine_config()).await?;
    tracing::info!(
        clickhouse_version = %engine.clickhouse().version(),
        postgres_version = %engine.store().server_version().await?,
        "connected to both databases"
    );
    let leptos_options = LeptosOptions::builder()
        .output_name("amigo")
        .site_root(args.site_root.as_str())
        .site_pkg_dir("pkg")
        .site_addr(args.listen)
        .build();
    let router = router(ServerState { leptos_options, engine });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!("serving the staff page at http://{}/instance/async_migrations", args.listen);
    axum::serve(listener, router).with_graceful_shutdown(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// The whole HTTP surface.
pub fn router(state: ServerState) -> Router {
    let routes = generate_route_list(App);
    let context_engine = state.engine.clone();
    let provide_engine = move || provide_context(context_engine.clone());
    let shell_options = state.leptos_options.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .leptos_routes_with_context(&state, routes, provide_engine, move || shell(shell_options.clone()))
        .fallback(leptos_axum::file_and_error_handler::<ServerState, _>(shell))
        .layer(CompressionLayer::new())
        .with_state(state)
}

/// 200 when both databases answer, 503 naming the one that does not.
async fn healthz(State(engine): State<Engine>) -> (StatusCode, String) {
    match engine.check_health().await {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")),
    }
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
