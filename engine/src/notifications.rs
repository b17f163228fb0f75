//! Notifications for staff who are not watching: the outbox in Postgres (filled in the transaction of each
//! change that deserves one, see `migrations/0007_notifications.sql`), the waits that went on too long, and
//! the delivery of each to the webhook in the settings, by whichever runner takes it first (`FOR UPDATE SKIP
//! LOCKED`), retried with growing pauses, each attempt's outcome recorded on the row.

use std::time::Duration;

use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::Serialize;
use sqlx::Row;
use tokio::sync::watch;

use crate::settings::RuntimeSettings;
use crate::store::{insert_audit, Store};
use crate::{Engine, Error, Result};

/// Attempts after which a notification is given up (the pauses between them add up to about an hour and a half).
pub const MAX_ATTEMPTS: i32 = 10;
/// How long one delivery may take, connection and answer included.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a courier looks for retries due and waits gone on too long, besides when one is queued.
const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// One notification and how its delivery went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub id: i64,
    /// `None` for a test notification.
    pub migration_name: Option<String>,
    /// `errored`, `failed_at_startup`, `completed`, `ready_to_cut_over`, `waiting` or `test`.
    pub event: String,
    /// The error, the reason staff gave, or what the migration waits for; may be empty.
    pub detail: String,
    pub occurred_at: DateTime<Utc>,
    pub requested_by: Option<String>,
    pub attempts: i32,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// `HTTP 200`, `HTTP 500: <start of the answer>` or why no answer came.
    pub last_outcome: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub gave_up_at: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
}

impl Notification {
    /// The message as a person reads it in a chat channel.
    pub fn text(&self) -> String {
        let migration = self.migration_name.as_deref().unwrap_or("amigo");
        let detail = if self.detail.is_empty() { String::new() } else { format!(": {}", self.detail) };
        match self.event.as_str() {
            "errored" => format!("amigo: {migration} errored{detail}. Resume it or roll it back from the staff page."),
            "failed_at_startup" => format!("amigo: {migration} failed at startup{detail}."),
            "completed" => format!("amigo: {migration} completed{detail}."),
            "ready_to_cut_over" => format!("amigo: {migration} is ready to cut over and waits for someone to click Cut over."),
            "waiting" => format!("amigo: {migration} has been waiting since {}{detail}.", self.occurred_at.format("%Y-%m-%d %H:%M UTC")),
            "test" => format!("amigo: a test notification, sent by {}.", self.requested_by.as_deref().unwrap_or("staff")),
            other => format!("amigo: {migration}: {other}{detail}"),
        }
    }

    /// The JSON posted: Slack's `text`, and the same facts as fields for any other receiver.
    pub fn payload(&self) -> serde_json::Value {
        serde_json::json!({
            "text": self.text(),
            "event": self.event,
            "migration": self.migration_name,
            "detail": self.detail,
            "occurred_at": self.occurred_at,
            "notification_id": self.id,
        })
    }

    /// `delivered`, `given up`, `retrying` or `queued`.
    pub fn delivery_state(&self) -> &'static str {
        match (self.delivered_at, self.gave_up_at, self.attempts) {
            (Some(_), _, _) => "delivered",
            (None, Some(_), _) => "given up",
            (None, None, 0) => "queued",
            (None, None, _) => "retrying",
        }
    }
}

const COLUMNS: &str = "id, migration_name, event, detail, occurred_at, requested_by, attempts, last_attempt_at, last_outcome,
     delivered_at, gave_up_at, next_attempt_at";

fn notification_from_row(row: &sqlx::postgres::PgRow) -> Result<Notification> {
    Ok(Notification {
        id: row.try_get("id")?,
        migration_name: row.try_get("migration_name")?,
        event: row.try_get("event")?,
        detail: row.try_get("detail")?,
        occurred_at: row.try_get("occurred_at")?,
        requested_by: row.try_get("requested_by")?,
        attempts: row.try_get("attempts")?,
        last_attempt_at: row.try_get("last_attempt_at")?,
        last_outcome: row.try_get("last_outcome")?,
        delivered_at: row.try_get("delivered_at")?,
        gave_up_at: row.try_get("gave_up_at")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
    })
}

/// The pause before attempt `attempts + 1`: 10 s, doubling, at most an hour.
fn retry_pause(attempts: i32) -> Duration {
    Duration::from_secs((10 * 2u64.pow(attempts.clamp(1, 16) as u32 - 1)).min(3600))
}

impl Engine {
    /// The latest notifications, newest first.
    pub async fn notifications(&self, limit: i64) -> Result<Vec<Notification>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM notification ORDER BY id DESC LIMIT $1"))
            .bind(limit)
            .fetch_all(self.store.pool())
            .await?;
        rows.iter().map(notification_from_row).collect()
    }

    /// Queues a test notification, with its audit row in the same transaction; refused while no webhook is set.
    pub async fn send_test_notification(&self, actor: &str) -> Result<Notification> {
        if self.settings().await?.webhook_url.is_empty() {
            return Err(Error::InvalidRequest("no webhook is set: save the setting webhook_url first".into()));
        }
        let mut transaction = self.store.pool().begin().await?;
        let row = sqlx::query(&format!("INSERT INTO notification (event, requested_by) VALUES ('test', $1) RETURNING {COLUMNS}"))
            .bind(actor)
            .fetch_one(&mut *transaction)
            .await?;
        insert_audit(&mut transaction, actor, "send test notification", None, &serde_json::json!({})).await?;
        transaction.commit().await?;
        notification_from_row(&row)
    }

    /// What delivers this instance's notifications; every runner runs one.
    pub fn courier(&self) -> Courier {
        Courier { store: self.store.clone(), client: webhook_client() }
    }
}

type WebhookClient =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Full<Bytes>>;

fn webhook_client() -> WebhookClient {
    let connector = hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots().https_or_http().enable_http1().build();
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector)
}

/// Delivers queued notifications and queues those for waits gone on too long.
#[derive(Clone)]
pub struct Courier {
    store: Store,
    client: WebhookClient,
}

impl Courier {
    /// Works until `shutdown` turns true: at once when a notification is queued (`LISTEN`), and every few
    /// seconds for retries that came due.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let mut listener = None;
        while !*shutdown.borrow() {
            if listener.is_none() {
                listener = listen(&self.store).await;
            }
            if let Err(error) = self.deliver_due().await {
                tracing::warn!(%error, "delivering notifications failed; retrying");
            }
            let queued = async {
                match listener.as_mut() {
                    Some(listener) => listener.recv().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => {}
                alive = queued => if !alive { listener = None },
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    }

    /// One pass: queues the waits gone on too long, then delivers every notification due. Returns how many
    /// attempts it made.
    pub async fn deliver_due(&self) -> Result<usize> {
        let settings = RuntimeSettings::from_stored(&self.store.settings().await?);
        if settings.webhook_url.is_empty() {
            return Ok(0);
        }
        if settings.notify_waiting_minutes > 0 {
            self.queue_long_waits(settings.notify_waiting_minutes).await?;
        }
        let mut attempts = 0;
        while self.deliver_next(&settings.webhook_url).await? {
            attempts += 1;
        }
        Ok(attempts)
    }

    /// Queues a `waiting` notification for each migration waiting longer than `minutes`, once per wait
    /// however many runners ask.
    async fn queue_long_waits(&self, minutes: u64) -> Result<()> {
        sqlx::query(
            "INSERT INTO notification (migration_name, event, detail, occurred_at, occurrence)
             SELECT name, 'waiting', waiting_reason, waiting_since, 'waiting ' || name || ' ' || waiting_since
             FROM async_migration
             WHERE waiting_since IS NOT NULL AND waiting_since < now() - make_interval(mins => $1)
             ON CONFLICT (occurrence) DO NOTHING",
        )
        .bind(minutes as i32)
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// Takes the oldest notification due that no other courier holds, posts it to `url` and records the
    /// outcome, all in one transaction. Returns false when none was due.
    async fn deliver_next(&self, url: &str) -> Result<bool> {
        let mut transaction = self.store.pool().begin().await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notification WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_attempt_at <= now()
             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
        ))
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(row) = row else { return Ok(false) };
        let notification = notification_from_row(&row)?;
        let outcome = self.post(url, &notification.payload()).await;
        let attempts = notification.attempts + 1;
        let (delivered, text) = match outcome {
            Ok(text) => {
                tracing::info!(notification = notification.id, event = %notification.event, "notification delivered");
                (true, text)
            }
            Err(error) => {
                tracing::warn!(notification = notification.id, attempts, %error, "notification not delivered");
                (false, error)
            }
        };
        sqlx::query(
            "UPDATE notification SET attempts = $2, last_attempt_at = now(), last_outcome = $3,
                 delivered_at = CASE WHEN $4 THEN now() END,
                 gave_up_at = CASE WHEN NOT $4 AND $2 >= $5 THEN now() END,
                 next_attempt_at = now() + make_interval(secs => $6)
             WHERE id = $1",
        )
        .bind(notification.id)
        .bind(attempts)
        .bind(text)
        .bind(delivered)
        .bind(MAX_ATTEMPTS)
        .bind(retry_pause(attempts).as_secs_f64())
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// Posts `payload` to `url`: `Ok` with the status line when it answered 2xx, else `Err` with what it said
    /// or why it did not answer.
    async fn post(&self, url: &str, payload: &serde_json::Value) -> std::result::Result<String, String> {
        let request = hyper::Request::post(url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, concat!("amigo/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(payload.to_string())))
            .map_err(|error| format!("not a valid request: {error}"))?;
        let answered = async {
            let response = self.client.request(request).await.map_err(|error| crate::error::with_causes(&error))?;
            let status = response.status();
            let body = response.into_body().collect().await.map_err(|error| error.to_string())?.to_bytes();
            Ok::<_, String>((status, String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string()))
        };
        match tokio::time::timeout(DELIVERY_TIMEOUT, answered).await {
            Err(_) => Err(format!("no answer within {} s", DELIVERY_TIMEOUT.as_secs())),
            Ok(Err(error)) => Err(error),
            Ok(Ok((status, _))) if status.is_success() => Ok(format!("HTTP {}", status.as_u16())),
            Ok(Ok((status, body))) if body.is_empty() => Err(format!("HTTP {}", status.as_u16())),
            Ok(Ok((status, body))) => Err(format!("HTTP {}: {body}", status.as_u16())),
        }
    }
}

/// A listener for `amigo_notification_queued`, or `None` while Postgres cannot give one (polling goes on).
async fn listen(store: &Store) -> Option<sqlx::postgres::PgListener> {
    let mut listener = sqlx::postgres::PgListener::connect_with(store.pool()).await.ok()?;
    listener.listen("amigo_notification_queued").await.ok()?;
    Some(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_longer_each_time_up_to_an_hour() {
        let pauses: Vec<u64> = (1..=MAX_ATTEMPTS).map(|attempts| retry_pause(attempts).as_secs()).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]);
    }
}
