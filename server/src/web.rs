//! The web server: the Leptos pages and server functions, the event stream, `/healthz`, `/metrics`, static files,
//! the protection against cross-site requests and oversized bodies, the embedded runner, the upgrade gate at
//! start, graceful shutdown.

use std::net::SocketAddr;
use std::process::ExitCode;

use app::shell;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{middleware, Router};
use engine::runner::Runner;
use engine::Engine;
use leptos::prelude::*;
use leptos_axum::LeptosRoutes;
use tokio::sync::watch;
use tower_http::compression::CompressionLayer;

use crate::cli::ServeArgs;
use crate::metrics::MetricsToken;
use crate::{body_limit, events, metrics, same_origin, Error, Result};

/// What every handler can reach.
#[derive(Clone, axum::extract::FromRef)]
pub struct ServerState {
    pub leptos_options: LeptosOptions,
    pub engine: Engine,
    /// Turns true when the server starts shutting down, so that open event streams end.
    pub shutdown: watch::Receiver<bool>,
    /// The bearer token `/metrics` asks for; `None` turns the route off.
    #[from_ref(skip)]
    pub metrics_token: Option<MetricsToken>,
    /// Where the browser bundle is served from.
    #[from_ref(skip)]
    pub site: SiteFiles,
}

/// Where the browser bundle and the public files are served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteFiles {
    /// The folder `LeptosOptions::site_root`, with the `.br` and `.gz` copies beside the files.
    Folder,
    /// The bundle compiled into the binary.
    #[cfg(feature = "embedded-site")]
    Embedded,
}

impl ServerState {
    /// State for a server that is never told to shut down (tests).
    pub fn new(leptos_options: LeptosOptions, engine: Engine) -> ServerState {
        ServerState { leptos_options, engine, shutdown: watch::channel(false).1, metrics_token: None, site: SiteFiles::Folder }
    }

    /// The same state with `/metrics` on, behind `token`.
    pub fn with_metrics_token(self, token: MetricsToken) -> ServerState {
        ServerState { metrics_token: Some(token), ..self }
    }
}

/// Refuses to start while migrations this version needs are pending (unless told to skip the check), then
/// serves until Ctrl-C or SIGTERM, with a runner inside unless `--no-runner`.
pub async fn serve(engine: Engine, args: &ServeArgs) -> Result<ExitCode> {
    tracing::info!(
        clickhouse_version = %engine.clickhouse().version(),
        postgres_version = %engine.postgres_version().await?,
        instance_version = %engine.config().instance_version,
        "connected to both databases"
    );
    let upgrade = engine.check_upgrade(None).await?;
    if !upgrade.is_ready() {
        if !args.skip_upgrade_check {
            return Err(Error::UpgradeBlocked(upgrade.refusal()));
        }
        tracing::warn!("{}", upgrade.refusal());
    }
    if args.no_runner {
        engine.complete_not_required().await?;
    }
    let (shutdown, shutdown_signal_receiver) = watch::channel(false);
    let shutdown_for_streams = shutdown_signal_receiver.clone();
    let runner_task = (!args.no_runner).then(|| {
        let runner = Runner::new(engine.clone());
        tokio::spawn(async move { runner.run(shutdown_signal_receiver).await })
    });
    let (site, site_root) = match &args.site_root {
        Some(folder) => (SiteFiles::Folder, folder.as_str()),
        #[cfg(feature = "embedded-site")]
        None => (SiteFiles::Embedded, ""),
        #[cfg(not(feature = "embedded-site"))]
        None => (SiteFiles::Folder, "target/site"),
    };
    let leptos_options =
        LeptosOptions::builder().output_name("amigo").site_root(site_root).site_pkg_dir("pkg").site_addr(args.listen).build();
    let metrics_token = args.metrics_token.as_deref().map(MetricsToken::new).transpose()?;
    let router = router(ServerState { leptos_options, engine, shutdown: shutdown_for_streams, metrics_token, site });
    let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|source| Error::Listen { address: args.listen, source })?;
    tracing::info!("serving the staff page at http://{}/instance/async_migrations", args.listen);
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            let _ = shutdown.send(true);
        })
        .await?;
    if let Some(task) = runner_task {
        let _ = task.await;
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The whole HTTP surface.
pub fn router(state: ServerState) -> Router {
    let routes = app::page_routes();
    let context_engine = state.engine.clone();
    let provide_engine = move || provide_context(context_engine.clone());
    let shell_options = state.leptos_options.clone();
    let pages = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::metrics))
        .route(app::live::EVENTS_PATH, get(events::migration_events))
        .leptos_routes_with_context(&state, routes, provide_engine, move || shell(shell_options.clone()));
    // Any other path is a file of the bundle (its brotli or gzip copy when the browser accepts one), else the
    // app's not-found page.
    let pages = match state.site {
        SiteFiles::Folder => pages.fallback(leptos_axum::file_and_error_handler::<ServerState, _>(shell)),
        #[cfg(feature = "embedded-site")]
        SiteFiles::Embedded => pages.fallback(crate::embedded_site::files_or_page),
    };
    pages
        .layer(middleware::from_fn(body_limit::refuse_oversized_bodies))
        .layer(middleware::from_fn(same_origin::refuse_cross_site))
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

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
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
