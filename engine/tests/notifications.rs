//! Notifications against real Postgres and a local webhook receiver: what is queued for which change (in its
//! transaction), delivery and its record, retries, two couriers racing, waits gone on too long, refusals.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::definition::{CheckOutcome, MigrationDefinition, Operation};
use engine::notifications::Notification;
use engine::status::Status;
use engine::{Engine, Error};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const TESTER: &str = "tester@example.com";

/// A webhook receiver on loopback: answers each request with the next status queued (200 once they run out)
/// and hands over the JSON bodies it received.
struct Receiver {
    url: String,
    statuses: Arc<Mutex<VecDeque<u16>>>,
    bodies: mpsc::UnboundedReceiver<Value>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/amigo", listener.local_addr().unwrap());
        let statuses = Arc::new(Mutex::new(VecDeque::new()));
        let (sender, bodies) = mpsc::unbounded_channel();
        let answers = statuses.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let status = answers.lock().unwrap().pop_front().unwrap_or(200);
                let sender = sender.clone();
                tokio::spawn(async move {
                    let body = read_request_body(&mut socket).await;
                    let reason = if status == 200 { "OK" } else { "Internal Server Error" };
                    let answer = if status == 200 { "ok" } else { "no_service" };
                    let response =
                        format!("HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}", answer.len());
                    socket.write_all(response.as_bytes()).await.unwrap();
                    let _ = sender.send(serde_json::from_slice(&body).expect("the body is JSON"));
                });
            }
        });
        Receiver { url, statuses, bodies }
    }

    fn answer_next_with(&self, statuses: &[u16]) {
        self.statuses.lock().unwrap().extend(statuses);
    }

    async fn next_body(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(20), self.bodies.recv()).await.expect("a notification within 20 s").unwrap()
    }

    fn nothing_received(&mut self) -> bool {
        self.bodies.try_recv().is_err()
    }
}

async fn read_request_body(socket: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = socket.read(&mut buffer).await.unwrap();
        assert!(read > 0, "the request ended early");
        received.extend_from_slice(&buffer[..read]);
        let Some(end) = received.windows(4).position(|window| window == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
        assert!(head.starts_with("post /hooks/amigo http/1.1"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map(|value| value.trim().parse().unwrap())
            .expect("a content-length");
        if received.len() >= end + 4 + length {
            return received[end + 4..end + 4 + length].to_vec();
        }
    }
}

/// One Rust operation that fails while `failing` is set.
fn one_step(name: &str, failing: Arc<AtomicBool>) -> MigrationDefinition {
    MigrationDefinition::new(name, "one step").operation(Operation::rust(
        "the step",
        move |_| {
            let failing = failing.clone();
            async move {
                if failing.load(Ordering::SeqCst) {
                    return Err(Error::Migration("the disk of shard 1 is full".into()));
                }
                Ok(())
            }
        },
        |_| async { Ok(()) },
    ))
}

async fn engine_with(definitions: Vec<MigrationDefinition>) -> Engine {
    let mut config = engine::testing::fresh_databases().await;
    config.lease_timeout = Duration::from_secs(2);
    let engine = Engine::connect(&config, definitions).await.expect("connect");
    engine.update_setting("disable_auto_rollback", &json!(true), TESTER).await.unwrap();
    engine
}

async fn run_to_the_end(engine: &Engine, name: &str) -> Status {
    engine.start(name, TESTER, &serde_json::Map::new()).await.unwrap();
    let runner = engine::runner::Runner::new(engine.clone());
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    runner.work_once(&shutdown).await.unwrap();
    engine.migration(name).await.unwrap().record.status
}

async fn only_notification(engine: &Engine) -> Notification {
    let mut all = engine.notifications(10).await.unwrap();
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

#[tokio::test]
async fn an_error_and_a_completion_are_delivered_once_each_with_their_record() {
    let failing = Arc::new(AtomicBool::new(true));
    let engine = engine_with(vec![one_step("0001_step", failing.clone())]).await;
    let mut receiver = Receiver::start().await;
    engine.update_setting("webhook_url", &json!(receiver.url), TESTER).await.unwrap();

    assert_eq!(run_to_the_end(&engine, "0001_step").await, Status::Errored);
    let queued = only_notification(&engine).await;
    assert_eq!(
        (queued.event.as_str(), queued.migration_name.as_deref(), queued.delivery_state()),
        ("errored", Some("0001_step"), "queued")
    );
    assert!(queued.detail.contains("the disk of shard 1 is full"), "{}", queued.detail);

    assert_eq!(engine.courier().deliver_due().await.unwrap(), 1);
    let body = receiver.next_body().await;
    assert_eq!((body["event"].as_str(), body["migration"].as_str()), (Some("errored"), Some("0001_step")));
    let text = body["text"].as_str().unwrap();
    assert!(text.starts_with("amigo: 0001_step errored: ") && text.contains("the disk of shard 1 is full"), "{text}");
    let delivered = only_notification(&engine).await;
    assert_eq!((delivered.delivery_state(), delivered.attempts, delivered.last_outcome.as_deref()), ("delivered", 1, Some("HTTP 200")));
    assert_eq!(engine.courier().deliver_due().await.unwrap(), 0, "a delivered notification is not sent again");

    failing.store(false, Ordering::SeqCst);
    engine.resume("0001_step", TESTER).await.unwrap();
    let runner = engine::runner::Runner::new(engine.clone());
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    runner.work_once(&shutdown).await.unwrap();
    assert_eq!(engine.courier().deliver_due().await.unwrap(), 1);
    let body = receiver.next_body().await;
    assert_eq!((body["event"].as_str(), body["text"].as_str()), (Some("completed"), Some("amigo: 0001_step completed.")));
    assert!(receiver.nothing_received());
}

#[tokio::test]
async fn a_failed_delivery_is_retried_later_with_its_outcome_recorded_then_given_up() {
    let engine = engine_with(vec![]).await;
    let mut receiver = Receiver::start().await;
    engine.update_setting("webhook_url", &json!(receiver.url), TESTER).await.unwrap();
    receiver.answer_next_with(&[500]);
    let test = engine.send_test_notification(TESTER).await.unwrap();
    assert_eq!((test.event.as_str(), test.requested_by.as_deref()), ("test", Some(TESTER)));

    assert_eq!(engine.courier().deliver_due().await.unwrap(), 1);
    assert_eq!(receiver.next_body().await["text"], format!("amigo: a test notification, sent by {TESTER}."));
    let failed = only_notification(&engine).await;
    assert_eq!((failed.delivery_state(), failed.attempts, failed.last_outcome.as_deref()), ("retrying", 1, Some("HTTP 500: no_service")));
    let pause = (failed.next_attempt_at - failed.last_attempt_at.unwrap()).num_milliseconds();
    assert!((9_900..=10_100).contains(&pause), "the first retry waits 10 s, not {pause} ms");
    assert_eq!(engine.courier().deliver_due().await.unwrap(), 0, "not before the retry is due");

    // The retry's time comes (here: is brought forward), and the receiver answers.
    sqlx::query("UPDATE notification SET next_attempt_at = now()").execute(engine.store().pool()).await.unwrap();
    assert_eq!(engine.courier().deliver_due().await.unwrap(), 1);
    receiver.next_body().await;
    let delivered = only_notification(&engine).await;
    assert_eq!((delivered.delivery_state(), delivered.attempts, delivered.last_outcome.as_deref()), ("delivered", 2, Some("HTTP 200")));

    // A receiver that never answers well: given up after the last attempt, its error kept.
    engine.update_setting("webhook_url", &json!("http://127.0.0.1:9/nobody-listens"), TESTER).await.unwrap();
    let doomed = engine.send_test_notification(TESTER).await.unwrap();
    for _ in 0..engine::notifications::MAX_ATTEMPTS {
        sqlx::query("UPDATE notification SET next_attempt_at = now() WHERE id = $1")
            .bind(doomed.id)
            .execute(engine.store().pool())
            .await
            .unwrap();
        assert_eq!(engine.courier().deliver_due().await.unwrap(), 1);
    }
    let given_up = engine.notifications(1).await.unwrap().remove(0);
    assert_eq!((given_up.id, given_up.delivery_state(), given_up.attempts), (doomed.id, "given up", engine::notifications::MAX_ATTEMPTS));
    assert!(given_up.last_outcome.as_deref().is_some_and(|outcome| outcome.contains("onnection refused")), "{:?}", given_up.last_outcome);
    sqlx::query("UPDATE notification SET next_attempt_at = now()").execute(engine.store().pool()).await.unwrap();
    assert_eq!(engine.courier().deliver_due().await.unwrap(), 0, "a given-up notification is not tried again");
}

#[tokio::test]
async fn two_couriers_racing_deliver_each_notification_once() {
    let engine = engine_with(vec![]).await;
    let mut receiver = Receiver::start().await;
    engine.update_setting("webhook_url", &json!(receiver.url), TESTER).await.unwrap();
    for _ in 0..8 {
        engine.send_test_notification(TESTER).await.unwrap();
    }
    let (first, second) = (engine.courier(), engine.courier());
    let (a, b) = tokio::join!(first.deliver_due(), second.deliver_due());
    assert_eq!(a.unwrap() + b.unwrap(), 8);
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(receiver.next_body().await["notification_id"].as_i64().unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "each notification once: {ids:?}");
    assert!(engine.notifications(10).await.unwrap().iter().all(|notification| notification.attempts == 1));
}

#[tokio::test]
async fn without_a_webhook_nothing_is_queued_and_a_test_is_refused() {
    let engine = engine_with(vec![one_step("0001_step", Arc::new(AtomicBool::new(false)))]).await;
    engine.update_setting("webhook_url", &json!("   "), TESTER).await.unwrap();
    assert_eq!(run_to_the_end(&engine, "0001_step").await, Status::Completed);
    let refused = engine.send_test_notification(TESTER).await.unwrap_err();
    assert_eq!(refused.to_string(), "no webhook is set: save the setting webhook_url first");
    assert_eq!(engine.notifications(10).await.unwrap(), []);
    assert!(!engine.audit_log(10).await.unwrap().iter().any(|entry| entry.action == "send test notification"));

    let bad = engine.update_setting("webhook_url", &json!("hooks.example.com/amigo"), TESTER).await.unwrap_err();
    assert!(bad.to_string().starts_with("setting webhook_url: \"hooks.example.com/amigo\" is not an address"), "{bad}");
    assert_eq!(engine.settings().await.unwrap().webhook_url, "");
}

#[tokio::test]
async fn a_wait_longer_than_the_setting_is_told_once_by_the_runner_that_sees_it() {
    let pressure = Arc::new(AtomicBool::new(true));
    let held = pressure.clone();
    let definition = MigrationDefinition::new("0001_throttled", "one unit of work, held under pressure")
        .throttle(move |_| {
            let held = held.clone();
            async move {
                Ok(if held.load(Ordering::SeqCst) { CheckOutcome::Fail("182 parts in a partition".into()) } else { CheckOutcome::Pass })
            }
        })
        .operation(Operation::rust("one unit", |context| async move { context.hold_between_units().await }, |_| async { Ok(()) }));
    let engine = engine_with(vec![definition]).await;
    let mut receiver = Receiver::start().await;
    engine.update_setting("webhook_url", &json!(receiver.url), TESTER).await.unwrap();
    engine.update_setting("notify_waiting_minutes", &json!(5), TESTER).await.unwrap();
    engine.start("0001_throttled", TESTER, &serde_json::Map::new()).await.unwrap();
    let _runner = engine::testing::spawn_runner(&engine);
    engine::testing::wait_for(&engine, "0001_throttled", Duration::from_secs(20), "waiting", |overview| {
        overview.record.waiting_reason.is_some()
    })
    .await;
    assert_eq!(engine.courier().deliver_due().await.unwrap(), 0, "a wait shorter than the setting is not told");

    // Six minutes pass (here: the wait's start is moved back), and two couriers look.
    sqlx::query("UPDATE async_migration SET waiting_since = waiting_since - interval '6 minutes'")
        .execute(engine.store().pool())
        .await
        .unwrap();
    let (first, second) = (engine.courier(), engine.courier());
    let (a, b) = tokio::join!(first.deliver_due(), second.deliver_due());
    assert_eq!(a.unwrap() + b.unwrap(), 1, "one wait, one notification");
    let body = receiver.next_body().await;
    assert_eq!((body["event"].as_str(), body["detail"].as_str()), (Some("waiting"), Some("182 parts in a partition")));
    assert!(body["text"].as_str().unwrap().starts_with("amigo: 0001_throttled has been waiting since "), "{body}");
    assert_eq!(engine.courier().deliver_due().await.unwrap(), 0);

    pressure.store(false, Ordering::SeqCst);
    let done = engine::testing::wait_for(&engine, "0001_throttled", Duration::from_secs(20), "settled", engine::testing::is_settled).await;
    assert_eq!(done.record.status, Status::Completed);
    // The runner's own courier delivers the completion by itself.
    assert_eq!(receiver.next_body().await["event"], "completed");
}

#[tokio::test]
async fn ready_to_cut_over_is_told_once_and_the_completion_after_the_cut_over() {
    let definition = MigrationDefinition::new("0001_held", "waits for staff's cut-over").operation(Operation::rust(
        "wait for the cut-over",
        |context| async move { context.await_cutover(|| async { Ok(()) }).await },
        |_| async { Ok(()) },
    ));
    let engine = engine_with(vec![definition]).await;
    let mut receiver = Receiver::start().await;
    engine.update_setting("webhook_url", &json!(receiver.url), TESTER).await.unwrap();
    engine.start("0001_held", TESTER, &serde_json::Map::new()).await.unwrap();
    let _runner = engine::testing::spawn_runner(&engine);
    assert_eq!(receiver.next_body().await["text"], "amigo: 0001_held is ready to cut over and waits for someone to click Cut over.");
    engine.cut_over("0001_held", TESTER).await.unwrap();
    assert_eq!(receiver.next_body().await["text"], "amigo: 0001_held completed.");
    let events: Vec<String> = engine.notifications(10).await.unwrap().into_iter().rev().map(|notification| notification.event).collect();
    assert_eq!(events, ["ready_to_cut_over", "completed"], "the keep-up passes while ready are not told again");
}
