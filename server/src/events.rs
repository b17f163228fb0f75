//! `GET /api/events`: the staff page's live updates as server-sent events. A stream starts with a snapshot
//! of every migration, then sends each change the engine announces (from any process, through Postgres
//! NOTIFY), with keep-alive comments between. Like every server function it checks the staff session
//! itself, and it ends when the session does or the server shuts down.

use std::convert::Infallible;
use std::time::Duration;

use app::live::{MIGRATION_EVENT, SNAPSHOT_EVENT};
use app::model::MigrationRow;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use engine::record::MigrationRecord;
use engine::Engine;
use futures::Stream;
use tokio::sync::{broadcast, watch};

use crate::web::ServerState;

/// How often an open stream checks that its session still exists.
const SESSION_CHECK_INTERVAL: Duration = Duration::from_secs(60);

pub async fn migration_events(State(state): State<ServerState>, headers: HeaderMap) -> Response {
    let engine = state.engine.clone();
    if let Err(refusal) = app::session::staff_user(&engine, &headers).await {
        let status = StatusCode::from_u16(refusal.status_code()).unwrap_or(StatusCode::FORBIDDEN);
        return (status, axum::Json(refusal)).into_response();
    }
    let feed = Feed {
        changes: engine.subscribe().await,
        engine,
        headers,
        shutdown: state.shutdown.clone(),
        snapshot_due: true,
        session_check: tokio::time::interval_at(tokio::time::Instant::now() + SESSION_CHECK_INTERVAL, SESSION_CHECK_INTERVAL),
    };
    Sse::new(events(feed)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

/// What one open stream follows.
struct Feed {
    engine: Engine,
    headers: HeaderMap,
    changes: broadcast::Receiver<MigrationRecord>,
    shutdown: watch::Receiver<bool>,
    /// Every row is sent at the start, and again after this stream fell behind the broadcast.
    snapshot_due: bool,
    session_check: tokio::time::Interval,
}

fn events(feed: Feed) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(feed, |mut feed| async move {
        let event = feed.next_event().await?;
        Some((Ok(event), feed))
    })
}

impl Feed {
    /// The next event to send, or `None` to end the stream.
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if self.snapshot_due {
                self.snapshot_due = false;
                match self.engine.list().await {
                    Ok(overviews) => {
                        let rows: Vec<MigrationRow> = overviews.into_iter().map(MigrationRow::from).collect();
                        return Event::default().event(SNAPSHOT_EVENT).json_data(rows).ok();
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the migrations for an event stream; ending it");
                        return None;
                    }
                }
            }
            tokio::select! {
                change = self.changes.recv() => match change {
                    Ok(record) => {
                        let row = MigrationRow::from(self.engine.overview(record));
                        return Event::default().event(MIGRATION_EVENT).json_data(row).ok();
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => self.snapshot_due = true,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.session_check.tick() => {
                    if app::session::staff_user(&self.engine, &self.headers).await.is_err() {
                        return None;
                    }
                }
                () = shutting_down(&mut self.shutdown) => return None,
            }
        }
    }
}

/// Resolves once the server starts shutting down; never, if nobody will tell.
async fn shutting_down(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stopping| *stopping).await.is_err() {
        std::future::pending::<()>().await;
    }
}
