//! Live updates: the browser follows the server's event stream and hands the page every migration row it
//! sends. The stream starts with a `snapshot` of every row (so a reconnect catches up on what it missed),
//! then one `migration` event per change.

/// The server-sent events route (served by the server crate, checked like every server function).
pub const EVENTS_PATH: &str = "/api/events";
/// The first event of a stream: every migration row, as a JSON array.
pub const SNAPSHOT_EVENT: &str = "snapshot";
/// One changed migration row, as a JSON object.
pub const MIGRATION_EVENT: &str = "migration";

/// The state of the page's connection to the event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Live,
    Reconnecting,
}

impl Connection {
    pub fn label(self) -> &'static str {
        match self {
            Connection::Connecting => "Connecting…",
            Connection::Live => "Live",
            Connection::Reconnecting => "Reconnecting…",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Connection::Connecting => "connecting",
            Connection::Live => "live",
            Connection::Reconnecting => "reconnecting",
        }
    }
}

#[cfg(feature = "hydrate")]
pub use browser::follow_migrations;

#[cfg(feature = "hydrate")]
mod browser {
    use std::time::Duration;

    use futures::future::{AbortHandle, Abortable};
    use futures::StreamExt;
    use gloo_net::eventsource::futures::EventSource;
    use leptos::prelude::*;

    use super::{Connection, EVENTS_PATH, MIGRATION_EVENT, SNAPSHOT_EVENT};
    use crate::model::MigrationRow;

    const FIRST_RETRY: Duration = Duration::from_secs(1);
    const LONGEST_RETRY: Duration = Duration::from_secs(30);

    /// Follows the event stream until the returned handle is aborted, passing every row to `on_rows`.
    ///
    /// The browser's EventSource retries by itself after network errors; when it gives up (the server
    /// answered with an error, e.g. while restarting behind a proxy), this opens a new one after 1 s,
    /// doubling the wait up to 30 s until events flow again.
    pub fn follow_migrations(on_rows: impl Fn(Vec<MigrationRow>) + 'static, connection: RwSignal<Connection>) -> AbortHandle {
        let (handle, registration) = AbortHandle::new_pair();
        let follow = async move {
            let mut retry = FIRST_RETRY;
            loop {
                if let Ok(mut source) = EventSource::new(EVENTS_PATH) {
                    let subscriptions = (source.subscribe(SNAPSHOT_EVENT), source.subscribe(MIGRATION_EVENT), source.subscribe("error"));
                    if let (Ok(snapshots), Ok(changes), Ok(errors)) = subscriptions {
                        let mut events = futures::stream::select(futures::stream::select(snapshots, changes), errors);
                        // Ends when the EventSource gives up (closed); errors while it retries by itself
                        // arrive as "error" events.
                        while let Some(Ok((kind, message))) = events.next().await {
                            if kind == "error" {
                                connection.set(Connection::Reconnecting);
                                continue;
                            }
                            let Some(data) = message.data().as_string() else { continue };
                            // From bytes, as everything else the page reads (see crate::loading).
                            let rows = if kind == SNAPSHOT_EVENT {
                                serde_json::from_slice::<Vec<MigrationRow>>(data.as_bytes()).ok()
                            } else {
                                serde_json::from_slice::<MigrationRow>(data.as_bytes()).ok().map(|row| vec![row])
                            };
                            connection.set(Connection::Live);
                            retry = FIRST_RETRY;
                            if let Some(rows) = rows {
                                on_rows(rows);
                            }
                        }
                    }
                    source.close();
                }
                connection.set(Connection::Reconnecting);
                sleep(retry).await;
                retry = (retry * 2).min(LONGEST_RETRY);
            }
        };
        leptos::task::spawn_local(async move {
            let _ = Abortable::new(follow, registration).await;
        });
        handle
    }

    async fn sleep(duration: Duration) {
        let (done, wait) = futures::channel::oneshot::channel::<()>();
        set_timeout(
            move || {
                let _ = done.send(());
            },
            duration,
        );
        let _ = wait.await;
    }
}
