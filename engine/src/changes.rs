//! Change notification: every committed change to a migration, from any process, delivered to subscribers
//! (the page's live updates, `--wait`) over Postgres `LISTEN amigo_migration_changed`.

use std::time::Duration;

use tokio::sync::broadcast;

use crate::record::MigrationRecord;
use crate::store::Store;
use crate::Engine;

impl Engine {
    /// Every change to any migration, from any process, as it is committed. The first call returns once
    /// this process is listening, so that no change committed after it returns can be missed; while
    /// Postgres cannot be reached, that first call waits for it.
    pub async fn subscribe(&self) -> broadcast::Receiver<MigrationRecord> {
        self.changes
            .get_or_init(|| async {
                let (sender, _) = broadcast::channel(1024);
                let (listening, listening_signal) = tokio::sync::oneshot::channel();
                tokio::spawn(forward_changes(self.store.clone(), sender.clone(), listening));
                let _ = listening_signal.await;
                sender
            })
            .await
            .subscribe()
    }
}

/// Listens for `amigo_migration_changed` and broadcasts the changed record. After a lost connection (the
/// listener reconnects by itself) every record is sent again, since changes may have been missed.
async fn forward_changes(store: Store, sender: broadcast::Sender<MigrationRecord>, listening: tokio::sync::oneshot::Sender<()>) {
    let mut listening = Some(listening);
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(store.pool()).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for changes; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(error) = listener.listen("amigo_migration_changed").await {
            tracing::warn!(%error, "cannot listen for changes; retrying in 1 s");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if let Some(listening) = listening.take() {
            let _ = listening.send(());
        }
        loop {
            let changed = match listener.try_recv().await {
                Ok(Some(notification)) => store.migration(notification.payload()).await.map(|record| record.into_iter().collect()),
                Ok(None) => store.migrations().await,
                Err(error) => {
                    tracing::warn!(%error, "change listener failed; reconnecting");
                    break;
                }
            };
            match changed {
                Ok(records) => {
                    for record in records {
                        let _ = sender.send(record);
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot read a changed migration"),
            }
        }
    }
}
