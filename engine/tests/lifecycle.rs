//! The runner against real Postgres and ClickHouse: full runs, failures and rollbacks in reverse order,
//! stop (the ClickHouse query really killed), resume, leases, health checks, auto-start, and every refusal.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::definition::{CheckOutcome, MigrationDefinition, Operation};
use engine::parameters::ParameterSpec;
use engine::runner::Runner;
use engine::status::{Action, Status};
use engine::version::Version;
use engine::{Engine, EngineConfig, Error, MigrationOverview};
use serde_json::json;
use tokio::sync::watch;

const TESTER: &str = "tester@example.com";

/// A test's engine over fresh databases, with the runners it started (stopped when it is dropped).
struct Instance {
    engine: Engine,
    runners: Mutex<Vec<watch::Sender<bool>>>,
}

impl Instance {
    async fn new(definitions: Vec<MigrationDefinition>) -> Instance {
        Instance::with_config(definitions, |_| {}).await
    }

    async fn with_config(definitions: Vec<MigrationDefinition>, adjust: impl FnOnce(&mut EngineConfig)) -> Instance {
        let mut config = engine::testing::fresh_databases().await;
        config.lease_timeout = Duration::from_secs(2);
        adjust(&mut config);
        let engine = Engine::connect(&config, definitions).await.expect("connect");
        Instance { engine, runners: Mutex::new(Vec::new()) }
    }

    fn spawn_runner(&self) {
        self.runners.lock().unwrap().push(engine::testing::spawn_runner(&self.engine));
    }

    async fn overview(&self, name: &str) -> MigrationOverview {
        self.engine.migration(name).await.expect("migration")
    }

    async fn wait_for(&self, name: &str, what: &str, condition: impl Fn(&MigrationOverview) -> bool) -> MigrationOverview {
        engine::testing::wait_for(&self.engine, name, Duration::from_secs(20), what, condition).await
    }

    async fn wait_until_settled(&self, name: &str) -> MigrationOverview {
        self.wait_for(name, "settled", engine::testing::is_settled).await
    }

    async fn clickhouse_count(&self, sql: &str) -> u64 {
        self.engine.clickhouse().client().query(sql).fetch_one::<u64>().await.expect(sql)
    }

    async fn audit_actions(&self) -> Vec<String> {
        self.engine.audit_log(100).await.unwrap().into_iter().map(|entry| entry.action).collect()
    }
}

/// A journal that Rust operations and rollbacks write to, to prove what ran and in which order.
#[derive(Clone, Default)]
struct Journal(Arc<Mutex<Vec<String>>>);

impl Journal {
    fn write(&self, entry: String) {
        self.0.lock().unwrap().push(entry);
    }

    fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// `count` Rust operations that journal `run i` and `rollback i`; operation `fail_at` fails while `failing`.
fn journaled(name: &str, count: usize, fail_at: Option<usize>, failing: Arc<AtomicBool>, journal: &Journal) -> MigrationDefinition {
    let mut definition = MigrationDefinition::new(name, "journals every step");
    for index in 0..count {
        let (run_journal, rollback_journal, failing) = (journal.clone(), journal.clone(), failing.clone());
        definition = definition.operation(Operation::rust(
            &format!("step {index}"),
            move |_| {
                let (journal, failing) = (run_journal.clone(), failing.clone());
                async move {
                    if fail_at == Some(index) && failing.load(Ordering::SeqCst) {
                        return Err(Error::Migration(format!("injected failure in step {index}")));
                    }
                    journal.write(format!("run {index}"));
                    Ok(())
                }
            },
            move |_| {
                let journal = rollback_journal.clone();
                async move {
                    journal.write(format!("rollback {index}"));
                    Ok(())
                }
            },
        ));
    }
    definition
}

/// A migration whose second operation is a ClickHouse query that runs for minutes unless killed.
fn slow_query_migration(name: &str) -> MigrationDefinition {
    MigrationDefinition::new(name, "creates a table, then runs a very long query")
        .operation(Operation::clickhouse(
            "create the target table",
            "CREATE TABLE {database}.slow_target (n UInt64) ENGINE = MergeTree ORDER BY n",
            "DROP TABLE IF EXISTS {database}.slow_target",
        ))
        .operation(Operation::clickhouse(
            "a query that takes minutes",
            "INSERT INTO {database}.slow_target SELECT sum(sipHash64(number)) FROM numbers(100000000000)",
            "",
        ))
}

#[tokio::test]
async fn a_full_run_executes_every_operation_and_completes() {
    let definition = MigrationDefinition::new("0001_full_run", "ClickHouse and Postgres operations")
        .parameter(ParameterSpec::integer("rows", "rows to insert", 1000, 1, 1_000_000))
        .operation(Operation::clickhouse(
            "create a table",
            "CREATE TABLE {database}.numbers_copy (n UInt64) ENGINE = MergeTree ORDER BY n",
            "DROP TABLE IF EXISTS {database}.numbers_copy",
        ))
        .operation(Operation::clickhouse("fill it", "INSERT INTO {database}.numbers_copy SELECT number FROM numbers({rows})", ""))
        .operation(Operation::postgres(
            "note it in Postgres",
            "CREATE TABLE copied_marker (rows bigint); INSERT INTO copied_marker VALUES ({rows})",
            "DROP TABLE IF EXISTS copied_marker",
        ));
    let instance = Instance::new(vec![definition]).await;
    let before = instance.overview("0001_full_run").await;
    assert_eq!(before.record.status, Status::NotStarted);
    assert_eq!(before.operation_count, 3);

    let mut values = serde_json::Map::new();
    values.insert("rows".into(), json!(2500));
    instance.engine.start("0001_full_run", TESTER, &values).await.unwrap();
    assert_eq!(instance.overview("0001_full_run").await.record.status, Status::Starting);
    instance.spawn_runner();
    let done = instance.wait_until_settled("0001_full_run").await;

    let record = &done.record;
    assert_eq!(record.status, Status::Completed, "{:?}", instance.engine.errors("0001_full_run").await);
    assert_eq!(record.progress, 100);
    assert!(record.started_at.is_some() && record.finished_at.is_some());
    assert!(record.finished_at >= record.started_at);
    assert_eq!(record.parameters, json!({ "rows": 2500 }));
    assert_eq!(instance.clickhouse_count("SELECT count() FROM numbers_copy").await, 2500);
    let marker: i64 = sqlx::query_scalar("SELECT rows FROM copied_marker").fetch_one(instance.engine.store().pool()).await.unwrap();
    assert_eq!(marker, 2500);
    assert!(instance.engine.errors("0001_full_run").await.unwrap().is_empty());
    assert_eq!(instance.audit_actions().await, vec!["start"]);
}

#[tokio::test]
async fn a_failure_in_operation_n_rolls_back_n_to_0_in_reverse() {
    let journal = Journal::default();
    let instance = Instance::new(vec![journaled("0001_fails", 4, Some(2), Arc::new(AtomicBool::new(true)), &journal)]).await;
    instance.engine.start("0001_fails", TESTER, &serde_json::Map::new()).await.unwrap();
    instance.spawn_runner();
    let done = instance.wait_until_settled("0001_fails").await;

    assert_eq!(done.record.status, Status::RolledBack);
    assert_eq!(journal.entries(), ["run 0", "run 1", "rollback 2", "rollback 1", "rollback 0"]);
    assert_eq!(done.record.progress, 0);
    let errors = instance.engine.errors("0001_fails").await.unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].operation_index, Some(2));
    assert!(errors[0].message.contains("injected failure in step 2"), "{}", errors[0].message);
}

#[tokio::test]
async fn with_auto_rollback_disabled_a_failure_stays_errored_and_resume_continues_from_it() {
    let journal = Journal::default();
    let failing = Arc::new(AtomicBool::new(true));
    let instance = Instance::new(vec![journaled("0001_resumable", 4, Some(2), failing.clone(), &journal)]).await;
    instance.engine.update_setting("disable_auto_rollback", &json!(true), TESTER).await.unwrap();
    instance.engine.start("0001_resumable", TESTER, &serde_json::Map::new()).await.unwrap();
    instance.spawn_runner();
    let errored = instance.wait_until_settled("0001_resumable").await;
    assert_eq!(errored.record.status, Status::Errored);
    assert_eq!(errored.record.current_operation_index, 2);
    assert_eq!(errored.current_operation.as_deref(), Some("step 2"));
    assert_eq!(journal.entries(), ["run 0", "run 1"], "no rollback may run");

    failing.store(false, Ordering::SeqCst); // the operator fixed the cause
    instance.engine.resume("0001_resumable", TESTER).await.unwrap();
    let done = instance.wait_until_settled("0001_resumable").await;
    assert_eq!(done.record.status, Status::Completed);
    assert_eq!(journal.entries(), ["run 0", "run 1", "run 2", "run 3"], "resume must not redo steps 0 and 1");
}

#[tokio::test]
async fn rollback_of_an_errored_migration_undoes_from_its_operation_down() {
    let journal = Journal::default();
    let instance = Instance::new(vec![journaled("0001_manual_rollback", 3, Some(1), Arc::new(AtomicBool::new(true)), &journal)]).await;
    instance.engine.update_setting("disable_auto_rollback", &json!(true), TESTER).await.unwrap();
    instance.engine.start("0001_manual_rollback", TESTER, &serde_json::Map::new()).await.unwrap();
    instance.spawn_runner();
    assert_eq!(instance.wait_until_settled("0001_manual_rollback").await.record.status, Status::Errored);

    instance.engine.rollback("0001_manual_rollback", TESTER).await.unwrap();
    let done = instance.wait_until_settled("0001_manual_rollback").await;
    assert_eq!(done.record.status, Status::RolledBack);
    assert!(!done.record.rolling_back);
    assert_eq!(journal.entries(), ["run 0", "rollback 1", "rollback 0"]);
    assert_eq!(instance.audit_actions().await, vec!["rollback", "start", "update setting"]);
}

/// Waits until the migration's current query shows in `system.processes`, and returns its id.
async fn running_query_id(instance: &Instance, name: &str) -> String {
    let overview = instance
        .wait_for(name, "running its slow query", |overview| {
            overview.record.current_operation_index == 1 && !overview.record.current_query_id.is_empty()
        })
        .await;
    let query_id = overview.record.current_query_id;
    let deadline = Instant::now() + Duration::from_secs(10);
    while instance.engine.clickhouse().query_progress(&query_id).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "query {query_id} never showed in system.processes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    query_id
}

#[tokio::test]
async fn stop_kills_the_running_clickhouse_query_within_a_second() {
    let instance = Instance::new(vec![slow_query_migration("0001_slow")]).await;
    instance.engine.start("0001_slow", TESTER, &serde_json::Map::new()).await.unwrap();
    instance.spawn_runner();
    let query_id = running_query_id(&instance, "0001_slow").await;

    let stop_requested = Instant::now();
    instance.engine.stop("0001_slow", TESTER, false).await.unwrap();
    while instance.engine.clickhouse().query_progress(&query_id).await.unwrap().is_some() {
        assert!(stop_requested.elapsed() < Duration::from_secs(1), "query still running 1 s after stop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let done = instance.wait_until_settled("0001_slow").await;
    assert_eq!(done.record.status, Status::Errored);
    let errors = instance.engine.errors("0001_slow").await.unwrap();
    assert!(errors.iter().any(|error| error.message == format!("stopped by {TESTER} during operation 1")), "{errors:?}");
    assert_eq!(
        instance.clickhouse_count("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'slow_target'").await,
        1,
        "a plain stop rolls nothing back"
    );
    // A second stop of a migration that is no longer running is refused.
    assert!(matches!(instance.engine.stop("0001_slow", TESTER, false).await, Err(Error::IllegalAction(_))));
}

#[tokio::test]
async fn stop_and_rollback_kills_the_query_then_rolls_back() {
    let instance = Instance::new(vec![slow_query_migration("0001_slow")]).await;
    instance.engine.start("0001_slow", TESTER, &serde_json::Map::new()).await.unwrap();
    instance.spawn_runner();
    let query_id = running_query_id(&instance, "0001_slow").await;
    instance.engine.stop("0001_slow", TESTER, true).await.unwrap();
    let done = instance.wait_until_settled("0001_slow").await;
    assert_eq!(done.record.status, Status::RolledBack);
    assert!(instance.engine.clickhouse().query_progress(&query_id).await.unwrap().is_none());
    assert_eq!(
        instance.clickhouse_count("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'slow_target'").await,
        0,
        "rollback drops the table"
    );
}

#[tokio::test]
async fn two_runners_never_run_one_migration_twice() {
    let executions = Arc::new(AtomicUsize::new(0));
    let counted = executions.clone();
    let definition = MigrationDefinition::new("0001_once", "counts its executions").operation(Operation::rust(
        "count",
        move |_| {
            let executions = counted.clone();
            async move {
                executions.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(())
            }
        },
        |_| async { Ok(()) },
    ));
    let instance = Instance::new(vec![definition]).await;
    let second_engine = Engine::connect(instance.engine.config(), vec![]).await.unwrap();
    instance.engine.start("0001_once", TESTER, &serde_json::Map::new()).await.unwrap();
    let shutdown = watch::channel(false).1;
    let (first, second) = (Runner::new(instance.engine.clone()), Runner::new(instance.engine.clone()));
    let third = Runner::new(second_engine); // a binary without this migration never claims it
    let (a, b, c) = tokio::join!(first.work_once(&shutdown), second.work_once(&shutdown), third.work_once(&shutdown));
    let claimed = [a.unwrap(), b.unwrap(), c.unwrap()].iter().filter(|claimed| **claimed).count();
    assert_eq!(claimed, 1);
    assert_eq!(executions.load(Ordering::SeqCst), 1);
    assert_eq!(instance.overview("0001_once").await.record.status, Status::Completed);
}

#[tokio::test]
async fn a_dead_runner_is_detected_and_its_migration_left_resumable() {
    let journal = Journal::default();
    let instance = Instance::new(vec![journaled("0001_orphan", 3, None, Arc::new(AtomicBool::new(false)), &journal)]).await;
    instance.engine.start("0001_orphan", TESTER, &serde_json::Map::new()).await.unwrap();
    // A runner claims it, gets to operation 1, then dies without a word.
    let pool = instance.engine.store().pool();
    assert!(instance.engine.store().claim_request("runner-that-dies", &instance.engine.definition_names()).await.unwrap().is_some());
    sqlx::query("UPDATE async_migration SET status = 'running', current_operation_index = 1, started_at = now()")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE runner_lease SET heartbeat_at = now() - interval '1 minute'").execute(pool).await.unwrap();

    instance.spawn_runner();
    let errored = instance.wait_until_settled("0001_orphan").await;
    assert_eq!(errored.record.status, Status::Errored);
    let errors = instance.engine.errors("0001_orphan").await.unwrap();
    assert_eq!(errors[0].message, "runner runner-that-dies died during operation 1; resume it, or roll it back");

    instance.engine.resume("0001_orphan", TESTER).await.unwrap();
    assert_eq!(instance.wait_until_settled("0001_orphan").await.record.status, Status::Completed);
    assert_eq!(journal.entries(), ["run 1", "run 2"]);
}

#[tokio::test]
async fn a_failing_health_check_stops_the_migration_with_its_message() {
    let healthy = Arc::new(AtomicBool::new(true));
    let check = healthy.clone();
    let definition = slow_query_migration("0001_unhealthy").health_check(move |_| {
        let healthy = check.clone();
        async move {
            Ok(if healthy.load(Ordering::SeqCst) {
                CheckOutcome::Pass
            } else {
                CheckOutcome::Fail("too many parts in partition 202611".into())
            })
        }
    });
    let instance = Instance::new(vec![definition]).await;
    instance.engine.update_setting("health_check_interval_seconds", &json!(1), TESTER).await.unwrap();
    instance.engine.start("0001_unhealthy", TESTER, &serde_json::Map::new()).await.unwrap();
    instance.spawn_runner();
    let query_id = running_query_id(&instance, "0001_unhealthy").await;
    healthy.store(false, Ordering::SeqCst);
    let done = instance.wait_until_settled("0001_unhealthy").await;
    assert_eq!(done.record.status, Status::RolledBack);
    assert!(instance.engine.clickhouse().query_progress(&query_id).await.unwrap().is_none());
    let errors = instance.engine.errors("0001_unhealthy").await.unwrap();
    assert_eq!(errors[0].message, "health check failed during operation 1: too many parts in partition 202611");
}

#[tokio::test]
async fn a_health_check_that_does_not_answer_before_the_next_is_due_fails_the_migration() {
    let definition = slow_query_migration("0001_check_hangs").health_check(|_| async {
        std::future::pending::<()>().await;
        Ok(CheckOutcome::Pass)
    });
    let instance = Instance::new(vec![definition]).await;
    instance.engine.update_setting("health_check_interval_seconds", &json!(1), TESTER).await.unwrap();
    instance.engine.start("0001_check_hangs", TESTER, &serde_json::Map::new()).await.unwrap();
    instance.spawn_runner();
    let query_id = running_query_id(&instance, "0001_check_hangs").await;
    let done = instance.wait_until_settled("0001_check_hangs").await;
    assert_eq!(done.record.status, Status::RolledBack);
    assert!(instance.engine.clickhouse().query_progress(&query_id).await.unwrap().is_none());
    let errors = instance.engine.errors("0001_check_hangs").await.unwrap();
    assert_eq!(errors[0].message, "health check failed during operation 1: the health check did not answer within 1 s");
}

#[tokio::test]
async fn a_query_whose_kill_failed_is_killed_before_the_migration_runs_again() {
    let journal = Journal::default();
    let instance = Instance::new(vec![journaled("0001_left_behind", 1, None, Arc::new(AtomicBool::new(false)), &journal)]).await;
    let clickhouse = instance.engine.clickhouse().clone();
    let run_for_minutes = |query_id: String| {
        let query =
            clickhouse.client().query("SELECT sum(sipHash64(number)) FROM numbers(100000000000)").with_setting("query_id", query_id);
        tokio::spawn(async move { query.execute().await })
    };
    // An earlier attempt's statement, which ClickHouse did not answer the kill of, is still running; a run of the
    // same migration for another database on the same server has a statement of its own running.
    let earlier = engine::context::query_id(clickhouse.database(), "0001_left_behind", 0, None, "earlier");
    let other = engine::context::query_id("another_product", "0001_left_behind", 0, None, "elsewhere");
    let left_behind = run_for_minutes(earlier.clone());
    let elsewhere = run_for_minutes(other.clone());
    for query_id in [&earlier, &other] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while clickhouse.query_progress(query_id).await.unwrap().is_none() {
            assert!(Instant::now() < deadline, "query {query_id} never showed in system.processes");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let message = "operation 0 failed: the copy broke; its query could not be killed: no answer to KILL QUERY within 5 s";
    instance.engine.store().record_error("0001_left_behind", Some(0), Some(&earlier), message).await.unwrap();

    instance.engine.start("0001_left_behind", TESTER, &serde_json::Map::new()).await.unwrap();
    instance.spawn_runner();
    assert_eq!(instance.wait_until_settled("0001_left_behind").await.record.status, Status::Completed);
    assert!(clickhouse.query_progress(&earlier).await.unwrap().is_none(), "killed");
    assert!(clickhouse.query_progress(&other).await.unwrap().is_some(), "left alone");
    clickhouse.kill_query(&other).await.unwrap();
    assert!(left_behind.await.unwrap().is_err() && elsewhere.await.unwrap().is_err());
}

#[tokio::test]
async fn a_failing_precheck_fails_the_start_and_changes_no_data() {
    let journal = Journal::default();
    let definition = journaled("0001_precheck", 2, None, Arc::new(AtomicBool::new(false)), &journal)
        .precheck(|_| async { Ok(CheckOutcome::Fail("only 1 GiB free; it needs 40 GiB".into())) });
    let instance = Instance::new(vec![definition]).await;
    instance.engine.start("0001_precheck", TESTER, &serde_json::Map::new()).await.unwrap();
    instance.spawn_runner();
    let done = instance.wait_until_settled("0001_precheck").await;
    assert_eq!(done.record.status, Status::FailedAtStartup);
    assert!(journal.entries().is_empty());
    let errors = instance.engine.errors("0001_precheck").await.unwrap();
    assert_eq!(errors[0].message, "precheck failed: only 1 GiB free; it needs 40 GiB");
}

#[tokio::test]
async fn staff_can_skip_a_failing_precheck_and_health_check_for_one_run() {
    let journal = Journal::default();
    let broken = |_| async { Ok(CheckOutcome::Fail("the replica-lag probe is down".into())) };
    let wait_past_a_health_check = Operation::rust(
        "wait past a health check",
        |_| async {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            Ok(())
        },
        engine::definition::nothing_to_undo,
    );
    let definition = journaled("0001_checked", 1, None, Arc::new(AtomicBool::new(false)), &journal)
        .operation(wait_past_a_health_check)
        .precheck(broken)
        .health_check(broken);
    let instance = Instance::new(vec![definition]).await;
    instance.engine.update_setting("health_check_interval_seconds", &json!(1), TESTER).await.unwrap();
    let unexplained = instance.engine.start_skipping_checks("0001_checked", TESTER, &serde_json::Map::new(), " ").await.unwrap_err();
    assert_eq!(unexplained.to_string(), "start skipping the checks of 0001_checked: give the reason, for the row and the audit log");
    assert_eq!(instance.overview("0001_checked").await.record.status, Status::NotStarted);

    let reason = "the probe itself is broken; the replicas are in sync (see the dashboard)";
    instance.engine.start_skipping_checks("0001_checked", TESTER, &serde_json::Map::new(), reason).await.unwrap();
    let queued = instance.overview("0001_checked").await;
    let note = format!("prechecks and health checks skipped for this run by {TESTER}: {reason}");
    assert_eq!((queued.record.checks_skipped, queued.record.status_note.as_deref()), (true, Some(note.as_str())));
    instance.spawn_runner();
    let done = instance.wait_until_settled("0001_checked").await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", instance.engine.errors("0001_checked").await);
    assert_eq!(journal.entries(), ["run 0"]);
    let start = instance.engine.audit_log(10).await.unwrap().into_iter().find(|entry| entry.action == "start").unwrap();
    assert_eq!(start.parameters["skip_checks"], reason);
}

#[tokio::test]
async fn a_migration_needing_a_newer_clickhouse_fails_at_startup() {
    let definition = MigrationDefinition::new("0001_future_sql", "needs features from the future").requires_clickhouse("99.1");
    let instance = Instance::new(vec![definition]).await;
    instance.engine.start("0001_future_sql", TESTER, &serde_json::Map::new()).await.unwrap();
    instance.spawn_runner();
    assert_eq!(instance.wait_until_settled("0001_future_sql").await.record.status, Status::FailedAtStartup);
    let message = &instance.engine.errors("0001_future_sql").await.unwrap()[0].message;
    assert!(message.starts_with("0001_future_sql needs ClickHouse >= 99.1, and this server runs "), "{message}");
}

#[tokio::test]
async fn dependencies_and_version_ranges_are_checked_before_anything_changes() {
    let instance = Instance::new(vec![
        MigrationDefinition::new("0001_first", "first"),
        MigrationDefinition::new("0002_second", "needs the first").depends_on("0001_first"),
        MigrationDefinition::new("0003_old", "for old versions").versions("0.0.1", "0.0.9"),
    ])
    .await;
    let refusal = instance.engine.start("0002_second", TESTER, &serde_json::Map::new()).await.unwrap_err();
    assert_eq!(refusal.to_string(), "cannot start 0002_second: it depends on 0001_first, which is not started; complete 0001_first first");
    let refusal = instance.engine.start("0003_old", TESTER, &serde_json::Map::new()).await.unwrap_err();
    assert_eq!(
        refusal.to_string(),
        format!("cannot start 0003_old: this instance runs amigo {}, and it runs on amigo 0.0.1 - 0.0.9 only", env!("CARGO_PKG_VERSION"))
    );
    for name in ["0002_second", "0003_old"] {
        assert_eq!(instance.overview(name).await.record.status, Status::NotStarted);
    }
    assert!(instance.audit_actions().await.is_empty(), "refusals change nothing");

    instance.engine.start("0001_first", TESTER, &serde_json::Map::new()).await.unwrap();
    instance.spawn_runner();
    assert_eq!(instance.wait_until_settled("0001_first").await.record.status, Status::Completed);
    instance.engine.start("0002_second", TESTER, &serde_json::Map::new()).await.unwrap();
    assert_eq!(instance.wait_until_settled("0002_second").await.record.status, Status::Completed);
}

#[tokio::test]
async fn parameters_are_validated_before_start_and_bad_ones_change_nothing() {
    let definition = MigrationDefinition::new("0001_params", "takes parameters")
        .parameter(ParameterSpec::integer("batch_size", "rows per batch", 1000, 1, 100_000))
        .parameter(ParameterSpec::identifier("archive_table", "where to move rows", "events_archive"));
    let instance = Instance::new(vec![definition]).await;
    let refuse = |values: serde_json::Value| {
        let engine = instance.engine.clone();
        async move { engine.start("0001_params", TESTER, values.as_object().unwrap()).await.unwrap_err().to_string() }
    };
    assert_eq!(
        refuse(json!({ "batch_size": 0 })).await,
        "parameter batch_size of 0001_params: 0 is out of range: it must be from 1 to 100000"
    );
    assert_eq!(refuse(json!({ "batch_size": "lots" })).await, "parameter batch_size of 0001_params: \"lots\" is not a whole number");
    assert!(refuse(json!({ "archive_table": "x`; DROP TABLE events; --" })).await.contains("is not a table or column name"));
    assert_eq!(refuse(json!({ "colour": "red" })).await, "0001_params has no parameter \"colour\"; it takes: batch_size, archive_table");
    let overview = instance.overview("0001_params").await;
    assert_eq!(overview.record.status, Status::NotStarted);
    assert_eq!(overview.record.parameters, json!({}));
    assert!(instance.audit_actions().await.is_empty());

    let assignments = ["batch_size=50".to_string()];
    let parameters = instance.engine.parameters_from_assignments("0001_params", &assignments).unwrap();
    instance.engine.start("0001_params", TESTER, parameters.to_json().as_object().unwrap()).await.unwrap();
    assert_eq!(instance.overview("0001_params").await.record.parameters, json!({ "batch_size": 50, "archive_table": "events_archive" }));
}

#[tokio::test]
async fn the_upgrade_gate_lists_what_must_complete_first() {
    let instance = Instance::new(vec![
        MigrationDefinition::new("0001_old_enough", "done before 0.3").versions("0.1.0", "0.2.0"),
        MigrationDefinition::new("0002_later", "later").versions("0.1.0", "0.9.0"),
    ])
    .await;
    let check = instance.engine.check_upgrade(Some(&Version::parse("0.5.0").unwrap())).await.unwrap();
    assert!(!check.is_ready());
    assert_eq!(
        check.refusal(),
        "List of async migrations to be applied:\n- 0001_old_enough - Available on amigo versions 0.1.0 - 0.2.0\nAsync migrations are not completed."
    );
    assert!(instance.engine.check_upgrade(Some(&Version::parse("0.2.0").unwrap())).await.unwrap().is_ready());
}

#[tokio::test]
async fn migrations_this_instance_does_not_need_are_marked_completed_without_running() {
    let journal = Journal::default();
    let not_needed = journaled("0001_not_needed", 2, None, Arc::new(AtomicBool::new(false)), &journal).is_required(|_| async { Ok(false) });
    let needed = MigrationDefinition::new("0002_needed", "needed").is_required(|_| async { Ok(true) });
    let instance = Instance::new(vec![not_needed, needed]).await;
    assert_eq!(instance.overview("0001_not_needed").await.record.status, Status::NotStarted, "connecting decides nothing");
    instance.spawn_runner();
    let record = instance.wait_for("0001_not_needed", "completed", |overview| overview.record.status == Status::Completed).await.record;
    assert_eq!(record.status, Status::Completed);
    assert_eq!(record.progress, 100);
    assert!(journal.entries().is_empty());
    assert_eq!(instance.overview("0002_needed").await.record.status, Status::NotStarted);
    // The audit entry is written just after the status.
    let deadline = Instant::now() + Duration::from_secs(10);
    while instance.audit_actions().await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(instance.audit_actions().await, vec!["completed: not required on this instance"]);
}

#[tokio::test]
async fn every_request_is_refused_in_every_status_that_does_not_allow_it() {
    use Action::*;
    let adjustable = ParameterSpec::integer("batch", "a batch size staff may change while it runs", 1, 1, 10).adjustable();
    let instance = Instance::new(vec![MigrationDefinition::new("0001_any", "placeholder").parameter(adjustable)]).await;
    let pool = instance.engine.store().pool().clone();
    // Each status as it is with no runner on it (starting is then queued), and what staff may ask in it.
    let allowed: [(Status, &[Action]); 7] = [
        (Status::NotStarted, &[Start]),
        (Status::Starting, &[Pause, Adjust, Stop, StopAndRollback]),
        (Status::Running, &[Pause, Adjust, Stop, StopAndRollback]),
        (Status::Completed, &[]),
        (Status::Errored, &[Resume, Rollback, MarkCompleted]),
        (Status::RolledBack, &[Start]),
        (Status::FailedAtStartup, &[Start]),
    ];
    for (status, allowed) in allowed {
        for action in Action::ALL {
            sqlx::query(
                "UPDATE async_migration SET status = $1, runner_id = NULL, requested_action = NULL, stop_requested_by = NULL,
                     rolling_back = false, pause_requested_by = NULL, held_since = NULL",
            )
            .bind(status.as_str())
            .execute(&pool)
            .await
            .unwrap();
            let outcome = match action {
                Start => instance.engine.start("0001_any", TESTER, &serde_json::Map::new()).await,
                Pause => instance.engine.pause("0001_any", TESTER).await.map(drop),
                Continue => instance.engine.continue_run("0001_any", TESTER).await.map(drop),
                Adjust => instance.engine.adjust("0001_any", TESTER, json!({ "batch": 2 }).as_object().unwrap()).await.map(drop),
                Stop => instance.engine.stop("0001_any", TESTER, false).await,
                StopAndRollback => instance.engine.stop("0001_any", TESTER, true).await,
                Rollback => instance.engine.rollback("0001_any", TESTER).await,
                Resume => instance.engine.resume("0001_any", TESTER).await,
                MarkErrored => instance.engine.mark_errored("0001_any", TESTER, "its runner's host is gone").await.map(drop),
                MarkCompleted => instance.engine.mark_completed("0001_any", TESTER, "finished by hand").await.map(drop),
                CutOver => instance.engine.cut_over("0001_any", TESTER).await.map(drop),
                Finalize => instance.engine.finalize("0001_any", TESTER).await.map(drop),
            };
            if allowed.contains(&action) {
                outcome.unwrap_or_else(|error| panic!("{action:?} from {status:?} was refused: {error}"));
            } else {
                let refusal = outcome.expect_err(&format!("{action:?} from {status:?} was accepted"));
                assert!(matches!(refusal, Error::IllegalAction(_)), "{refusal:?}");
                let after: (String, Option<String>) =
                    sqlx::query_as("SELECT status, pause_requested_by FROM async_migration").fetch_one(&pool).await.unwrap();
                assert_eq!(after, (status.as_str().to_string(), None), "a refused {action:?} changed the migration");
            }
        }
    }
    assert!(matches!(instance.engine.start("0009_missing", TESTER, &serde_json::Map::new()).await, Err(Error::UnknownMigration(_))));
}

#[tokio::test]
async fn a_migration_whose_runner_went_silent_says_so_and_staff_mark_it_errored_then_completed() {
    use engine::status::Phase;
    let instance = Instance::new(vec![MigrationDefinition::new("0001_any", "placeholder")]).await;
    let pool = instance.engine.store().pool().clone();
    // A runner took it up and died an hour ago, and no live runner is left to reap its lease.
    sqlx::raw_sql(
        "UPDATE async_migration SET status = 'running', runner_id = 'gone-host-1', started_at = now() - interval '2 hours';
         INSERT INTO runner_lease (migration_name, runner_id, heartbeat_at) VALUES ('0001_any', 'gone-host-1', now() - interval '1 hour')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let silent = instance.engine.migration("0001_any").await.unwrap();
    assert_eq!((silent.phase, silent.allowed_actions.as_slice()), (Phase::RunnerSilent, &[Action::MarkErrored][..]));
    let age = silent.record.heartbeat_age_seconds.expect("the heartbeat's age");
    assert!((3590.0..3700.0).contains(&age), "{age}");
    let listed = serde_json::to_value(&silent).unwrap();
    assert_eq!((&listed["phase"], &listed["allowed_actions"]), (&json!("runner_silent"), &json!(["mark_errored"])), "{listed}");
    assert!(listed["heartbeat_age_seconds"].as_f64().is_some(), "list --json carries the heartbeat's age: {listed}");
    let stop = instance.engine.stop("0001_any", TESTER, false).await.unwrap_err();
    assert!(matches!(stop, Error::IllegalAction(_)), "a stop no runner would act on is refused: {stop}");
    let unexplained = instance.engine.mark_errored("0001_any", TESTER, "  ").await.unwrap_err();
    assert_eq!(unexplained.to_string(), "mark errored 0001_any: give the reason, for the row and the audit log");
    assert_eq!(instance.overview("0001_any").await.record.status, Status::Running, "a refused request changed nothing");

    let marked = instance.engine.mark_errored("0001_any", TESTER, "its host was decommissioned").await.unwrap();
    assert_eq!((marked.phase, marked.record.runner_id.as_deref(), marked.record.heartbeat_age_seconds), (Phase::Errored, None, None));
    let note = format!("marked errored by {TESTER}: its host was decommissioned");
    assert_eq!(marked.record.status_note.as_deref(), Some(note.as_str()));
    assert_eq!(instance.engine.errors("0001_any").await.unwrap().last().map(|error| error.message.clone()), Some(note));
    let again = instance.engine.mark_errored("0001_any", TESTER, "twice").await.unwrap_err();
    assert!(matches!(again, Error::IllegalAction(_)), "{again}");

    let completed = instance.engine.mark_completed("0001_any", TESTER, "finished by hand with the runbook's SQL").await.unwrap();
    assert_eq!((completed.record.status, completed.record.progress), (Status::Completed, 100));
    assert_eq!(
        completed.record.status_note.as_deref(),
        Some(format!("marked completed by {TESTER}: finished by hand with the runbook's SQL").as_str())
    );
    let audit: Vec<(String, serde_json::Value)> =
        instance.engine.audit_log(10).await.unwrap().into_iter().rev().map(|entry| (entry.action, entry.parameters)).collect();
    assert_eq!(
        audit,
        [
            ("mark errored".to_string(), json!({ "reason": "its host was decommissioned" })),
            ("mark completed".to_string(), json!({ "reason": "finished by hand with the runbook's SQL" })),
        ]
    );
}

#[tokio::test]
async fn concurrent_starts_let_exactly_one_win() {
    let instance = Instance::new(vec![MigrationDefinition::new("0001_a", "a"), MigrationDefinition::new("0002_b", "b")]).await;
    let empty = serde_json::Map::new();
    let (same_one, same_two) =
        tokio::join!(instance.engine.start("0001_a", TESTER, &empty), instance.engine.start("0001_a", TESTER, &empty));
    assert_eq!([same_one.is_ok(), same_two.is_ok()].iter().filter(|ok| **ok).count(), 1);
    let refusal = instance.engine.start("0002_b", TESTER, &empty).await.unwrap_err();
    assert_eq!(refusal.to_string(), "cannot start 0002_b: 0001_a is already starting or running, and only one migration runs at a time");
    let (stop_one, stop_two) = tokio::join!(instance.engine.stop("0001_a", TESTER, false), instance.engine.stop("0001_a", TESTER, false));
    assert_eq!([stop_one.is_ok(), stop_two.is_ok()].iter().filter(|ok| **ok).count(), 1, "{stop_one:?} {stop_two:?}");
}

#[tokio::test]
async fn auto_start_runs_required_migrations_one_at_a_time_in_name_order() {
    let journal = Journal::default();
    let first = journaled("0001_auto", 1, None, Arc::new(AtomicBool::new(false)), &journal);
    let second = journaled("0002_auto", 1, None, Arc::new(AtomicBool::new(false)), &journal);
    let elsewhere = MigrationDefinition::new("0003_other_version", "not for this version").versions("9.0.0", "9.9.9");
    let instance = Instance::new(vec![second, first, elsewhere]).await;
    instance.spawn_runner();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(journal.entries().is_empty(), "auto-start is off by default");

    instance.engine.update_setting("auto_start", &json!(true), TESTER).await.unwrap();
    instance.wait_for("0002_auto", "completed", |overview| overview.record.status == Status::Completed).await;
    assert_eq!(instance.overview("0001_auto").await.record.status, Status::Completed);
    assert_eq!(journal.entries(), ["run 0", "run 0"]);
    let first_finished = instance.overview("0001_auto").await.record.finished_at.unwrap();
    let second_started = instance.overview("0002_auto").await.record.started_at.unwrap();
    assert!(first_finished <= second_started, "one at a time, in name order");
    assert_eq!(instance.overview("0003_other_version").await.record.status, Status::NotStarted);
}

#[tokio::test]
async fn progress_follows_the_rows_a_running_statement_has_read() {
    let definition = MigrationDefinition::new("0001_progress", "copies a table slowly")
        .operation(Operation::clickhouse(
            "create and fill the source",
            "CREATE TABLE {database}.progress_source ENGINE = MergeTree ORDER BY n AS SELECT number AS n FROM numbers(327680)",
            "DROP TABLE IF EXISTS {database}.progress_source",
        ))
        .operation(
            Operation::clickhouse(
                "copy it, about a second per block",
                "CREATE TABLE {database}.progress_target ENGINE = MergeTree ORDER BY n AS SELECT n, sleepEachRow(0.000015) AS slept FROM {database}.progress_source",
                "DROP TABLE IF EXISTS {database}.progress_target",
            )
            .with_setting("max_block_size", "65536")
            .with_setting("max_threads", "1"),
        );
    let instance = Instance::new(vec![definition]).await;
    let mut changes = instance.engine.subscribe().await;
    instance.engine.start("0001_progress", TESTER, &serde_json::Map::new()).await.unwrap();
    instance.spawn_runner();
    let mut seen_within_copy = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let record = tokio::time::timeout_at(deadline.into(), changes.recv()).await.expect("progress events").unwrap();
        if record.current_operation_index == 1 && record.progress > 50 && record.progress < 100 {
            seen_within_copy.push(record.progress);
        }
        if record.status == Status::Completed {
            break;
        }
    }
    assert!(!seen_within_copy.is_empty(), "no progress was reported while the copy ran");
    assert!(seen_within_copy.windows(2).all(|pair| pair[0] <= pair[1]), "progress went backwards: {seen_within_copy:?}");
}

#[tokio::test]
async fn a_statement_past_its_timeout_fails_its_operation_and_leaves_no_query_behind() {
    let definition = MigrationDefinition::new("0001_timeout", "a query with a one-second limit").operation(
        Operation::clickhouse("a query that takes minutes", "SELECT sum(sipHash64(number)) FROM numbers(100000000000)", "")
            .with_timeout(Duration::from_secs(1)),
    );
    let instance = Instance::new(vec![definition]).await;
    let started = Instant::now();
    instance.engine.start("0001_timeout", TESTER, &serde_json::Map::new()).await.unwrap();
    instance.spawn_runner();
    let done = instance.wait_until_settled("0001_timeout").await;
    assert!(started.elapsed() < Duration::from_secs(10), "the timeout did not fire: {:?}", started.elapsed());
    assert_eq!(done.record.status, Status::RolledBack);
    let errors = instance.engine.errors("0001_timeout").await.unwrap();
    let query_id = errors[0].query_id.clone().expect("the error names the query");
    assert!(errors[0].message.starts_with("operation 0 failed: "), "{}", errors[0].message);
    assert!(instance.engine.clickhouse().query_progress(&query_id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_check_that_cannot_run_fails_the_start_with_its_error_recorded() {
    let definition = MigrationDefinition::new("0001_broken_check", "its precheck cannot run")
        .precheck(|_| async { Err(Error::Migration("cannot read system.disks".into())) });
    let instance = Instance::new(vec![definition]).await;
    instance.engine.start("0001_broken_check", TESTER, &serde_json::Map::new()).await.unwrap();
    instance.spawn_runner();
    let done = instance.wait_until_settled("0001_broken_check").await;
    assert_eq!(done.record.status, Status::FailedAtStartup);
    assert_eq!(instance.engine.errors("0001_broken_check").await.unwrap()[0].message, "the runner failed: cannot read system.disks");
    assert!(instance.engine.store().take_stale_leases(Duration::ZERO).await.unwrap().is_empty(), "the lease was released");
}

#[tokio::test]
async fn a_run_survives_its_postgres_connections_being_killed() {
    let checkpoints = Journal::default();
    let journal = checkpoints.clone();
    let definition =
        MigrationDefinition::new("0001_reconnects", "reports progress and checkpoints for two seconds").operation(Operation::rust(
            "twenty steps of 100 ms",
            move |context| {
                let journal = journal.clone();
                async move {
                    for step in 0..20 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        context.save_checkpoint(json!({ "step": step })).await?;
                        context.report_progress(f64::from(step + 1) / 20.0).await?;
                        journal.write(format!("step {step}"));
                    }
                    Ok(())
                }
            },
            |_| async { Ok(()) },
        ));
    let instance = Instance::new(vec![definition]).await;
    instance.engine.start("0001_reconnects", TESTER, &serde_json::Map::new()).await.unwrap();
    instance.spawn_runner();
    instance.wait_for("0001_reconnects", "running", |overview| overview.record.status == Status::Running).await;

    // Postgres drops every connection of this database, three times, as a restart would.
    let database = instance.engine.config().database_url.rsplit('/').next().unwrap().to_string();
    let server_url = instance.engine.config().database_url.replace(&format!("/{database}"), "/postgres");
    let admin = sqlx::PgPool::connect(&server_url).await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let killed: Vec<bool> = sqlx::query_scalar("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(&database)
            .fetch_all(&admin)
            .await
            .unwrap();
        assert!(!killed.is_empty());
    }
    let done = instance.wait_until_settled("0001_reconnects").await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", instance.engine.errors("0001_reconnects").await);
    assert!(instance.engine.errors("0001_reconnects").await.unwrap().is_empty());
    assert_eq!(checkpoints.entries().len(), 20, "every step ran once");
}

#[tokio::test]
async fn a_rollback_that_fails_leaves_the_migration_errored_with_both_errors_recorded() {
    let definition = MigrationDefinition::new("0001_stuck", "fails, and so does its rollback").operation(Operation::rust(
        "fail",
        |_| async { Err(Error::Migration("the copy broke".into())) },
        |_| async { Err(Error::Migration("the table to drop is locked".into())) },
    ));
    let instance = Instance::new(vec![definition]).await;
    instance.engine.start("0001_stuck", TESTER, &serde_json::Map::new()).await.unwrap();
    instance.spawn_runner();
    let done = instance.wait_until_settled("0001_stuck").await;
    assert_eq!(done.record.status, Status::Errored);
    assert!(!done.record.rolling_back);
    let messages: Vec<String> = instance.engine.errors("0001_stuck").await.unwrap().into_iter().map(|error| error.message).collect();
    assert_eq!(
        messages,
        [
            "operation 0 failed: the copy broke",
            "rollback of operation 0 failed: the table to drop is locked; it stays errored: once the cause is fixed \
             (if ClickHouse could not be reached: once it answers again), roll it back again"
        ]
    );
    // The operator can try the rollback again once the cause is fixed.
    instance.engine.rollback("0001_stuck", TESTER).await.unwrap();
}

#[tokio::test]
async fn a_run_under_pressure_waits_with_its_reason_shown_and_goes_on_when_it_clears() {
    let under_pressure = Arc::new(AtomicBool::new(false));
    let pressure = under_pressure.clone();
    let journal = Journal::default();
    let steps = journal.clone();
    let definition = MigrationDefinition::new("0001_throttled", "three units of work, pausing between them under pressure")
        .throttle(move |_| {
            let pressure = pressure.clone();
            async move {
                Ok(if pressure.load(Ordering::SeqCst) {
                    CheckOutcome::Fail("partition 202611 of events has 180 active parts".into())
                } else {
                    CheckOutcome::Pass
                })
            }
        })
        .operation(Operation::rust(
            "three units",
            move |context| {
                let steps = steps.clone();
                async move {
                    for unit in 0..3 {
                        context.hold_between_units().await?;
                        steps.write(format!("unit {unit}"));
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    Ok(())
                }
            },
            |_| async { Ok(()) },
        ));
    let instance = Instance::new(vec![definition]).await;
    instance.engine.start("0001_throttled", TESTER, &serde_json::Map::new()).await.unwrap();
    instance.spawn_runner();
    instance.wait_for("0001_throttled", "running", |overview| overview.record.status == Status::Running).await;
    under_pressure.store(true, Ordering::SeqCst);
    let waiting = instance.wait_for("0001_throttled", "waiting", |overview| overview.record.waiting_reason.is_some()).await;
    assert_eq!(waiting.record.waiting_reason.as_deref(), Some("partition 202611 of events has 180 active parts"));
    assert_eq!(waiting.record.status, Status::Running);
    let units_before = journal.entries().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(journal.entries().len(), units_before, "no work while under pressure");

    under_pressure.store(false, Ordering::SeqCst);
    let done = instance.wait_until_settled("0001_throttled").await;
    assert_eq!(done.record.status, Status::Completed);
    assert_eq!(done.record.waiting_reason, None);
    assert_eq!(journal.entries(), ["unit 0", "unit 1", "unit 2"]);
}

#[tokio::test]
async fn units_run_two_at_a_time_start_no_more_once_pressure_is_read_and_go_on_when_it_clears() {
    let under_pressure = Arc::new(AtomicBool::new(false));
    let pressure = under_pressure.clone();
    let journal = Journal::default();
    let steps = journal.clone();
    let definition = MigrationDefinition::new("0001_throttled_streams", "eight units of work on two streams, held under pressure")
        .throttle(move |_| {
            let pressure = pressure.clone();
            async move { Ok(if pressure.load(Ordering::SeqCst) { CheckOutcome::Fail("merges behind".into()) } else { CheckOutcome::Pass }) }
        })
        .operation(Operation::rust(
            "eight units, two at a time",
            move |context| {
                let steps = steps.clone();
                async move {
                    let units = (0..8).map(|unit| (unit, 1)).collect();
                    context
                        .in_parallel(
                            units,
                            0,
                            |_| 2,
                            |_, stream, unit| {
                                let steps = steps.clone();
                                async move {
                                    steps.write(format!("unit {unit} on stream {stream}"));
                                    tokio::time::sleep(Duration::from_millis(400)).await;
                                    Ok(())
                                }
                            },
                        )
                        .await
                }
            },
            |_| async { Ok(()) },
        ));
    let instance = Instance::new(vec![definition]).await;
    instance.engine.start("0001_throttled_streams", TESTER, &serde_json::Map::new()).await.unwrap();
    instance.spawn_runner();
    instance.wait_for("0001_throttled_streams", "two units begun", |_| journal.entries().len() >= 2).await;
    under_pressure.store(true, Ordering::SeqCst);
    let waiting = instance.wait_for("0001_throttled_streams", "waiting", |overview| overview.record.waiting_reason.is_some()).await;
    assert_eq!(waiting.record.waiting_reason.as_deref(), Some("merges behind"));
    let units_before = journal.entries().len();
    assert!(units_before < 8, "the pressure was read before the last units: {:?}", journal.entries());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(journal.entries().len(), units_before, "no unit starts while under pressure");

    under_pressure.store(false, Ordering::SeqCst);
    let done = instance.wait_until_settled("0001_throttled_streams").await;
    assert_eq!(done.record.status, Status::Completed);
    let entries = journal.entries();
    assert_eq!(entries.len(), 8, "{entries:?}");
    assert!(entries.iter().all(|entry| entry.ends_with("stream 0") || entry.ends_with("stream 1")), "{entries:?}");
}

/// A migration whose first operation takes `rollback_seconds` to roll back, and whose second runs a ClickHouse
/// query for minutes unless killed: something to stop, resume and roll back while other requests race.
fn contested_migration(name: &str, rollback_seconds: u64) -> MigrationDefinition {
    MigrationDefinition::new(name, "a slow rollback, then a long query")
        .operation(Operation::rust(
            "nothing to do, slow to undo",
            |_| async { Ok(()) },
            move |_| async move {
                tokio::time::sleep(Duration::from_secs(rollback_seconds)).await;
                Ok(())
            },
        ))
        .operation(Operation::clickhouse("a query that takes minutes", "SELECT sum(sipHash64(number)) FROM numbers(100000000000)", ""))
}

/// Exactly one of two racing requests was accepted; the other was refused with an error that says why.
fn exactly_one_won(what: &str, first: engine::Result<()>, second: engine::Result<()>) {
    let refusals: Vec<Error> = [first, second].into_iter().filter_map(Result::err).collect();
    assert_eq!(refusals.len(), 1, "{what}: {refusals:?}");
    assert!(refusals[0].is_refusal(), "{what}: refused as a failure, not a refusal: {:?}", refusals[0]);
    assert!(refusals[0].to_string().contains("0001_contested"), "{what}: {}", refusals[0]);
}

#[tokio::test]
async fn racing_stops_resumes_and_rollbacks_let_exactly_one_win_and_nothing_interrupts_a_rollback() {
    const NAME: &str = "0001_contested";
    let instance = Instance::new(vec![contested_migration(NAME, 2)]).await;
    instance.spawn_runner();
    let no_parameters = serde_json::Map::new();
    let (first, second) =
        tokio::join!(instance.engine.start(NAME, TESTER, &no_parameters), instance.engine.start(NAME, TESTER, &no_parameters));
    exactly_one_won("two starts", first, second);
    running_query_id(&instance, NAME).await;

    let (first, second) = tokio::join!(instance.engine.stop(NAME, TESTER, false), instance.engine.stop(NAME, "other@example.com", false));
    exactly_one_won("two stops of a running migration", first, second);
    assert_eq!(instance.wait_until_settled(NAME).await.record.status, Status::Errored);

    let (first, second) = tokio::join!(instance.engine.resume(NAME, TESTER), instance.engine.resume(NAME, TESTER));
    exactly_one_won("two resumes", first, second);
    running_query_id(&instance, NAME).await;
    instance.engine.stop(NAME, TESTER, false).await.unwrap();
    instance.wait_until_settled(NAME).await;

    let (first, second) = tokio::join!(instance.engine.rollback(NAME, TESTER), instance.engine.rollback(NAME, TESTER));
    exactly_one_won("two rollbacks", first, second);
    instance
        .wait_for(NAME, "rolling back under a runner", |overview| overview.record.rolling_back && overview.record.runner_id.is_some())
        .await;
    let (stop, stop_and_rollback, start, resume, rollback) = tokio::join!(
        instance.engine.stop(NAME, TESTER, false),
        instance.engine.stop(NAME, TESTER, true),
        instance.engine.start(NAME, TESTER, &no_parameters),
        instance.engine.resume(NAME, TESTER),
        instance.engine.rollback(NAME, TESTER),
    );
    for (what, outcome) in
        [("stop", stop), ("stop and roll back", stop_and_rollback), ("start", start), ("resume", resume), ("roll back", rollback)]
    {
        let refusal = outcome.expect_err(&format!("{what} during a rollback was accepted"));
        assert!(refusal.to_string().contains("cannot") && refusal.to_string().contains(NAME), "{what} during a rollback: {refusal}");
    }
    assert_eq!(instance.wait_until_settled(NAME).await.record.status, Status::RolledBack, "{:?}", instance.engine.errors(NAME).await);
    let actions = instance.audit_actions().await;
    for (action, times) in [("start", 1), ("stop", 2), ("resume", 1), ("rollback", 1)] {
        assert_eq!(actions.iter().filter(|recorded| *recorded == action).count(), times, "{action} in {actions:?}");
    }
}

#[tokio::test]
async fn clean_up_that_hangs_after_a_failure_is_cut_off_at_the_rollback_timeout() {
    let definition = MigrationDefinition::new("0001_hanging_clean_up", "fails; ending its work hangs").operation(
        Operation::rust("fail", |_| async { Err(Error::Migration("the mutation broke".into())) }, |_| async { Ok(()) }).on_interrupt(
            |_| async {
                tokio::time::sleep(Duration::from_secs(600)).await;
                Ok(None)
            },
        ),
    );
    let instance = Instance::new(vec![definition]).await;
    instance.engine.update_setting("disable_auto_rollback", &json!(true), TESTER).await.unwrap();
    instance.engine.update_setting("rollback_timeout_seconds", &json!(1), TESTER).await.unwrap();
    instance.engine.start("0001_hanging_clean_up", TESTER, &serde_json::Map::new()).await.unwrap();
    instance.spawn_runner();
    let done = instance.wait_until_settled("0001_hanging_clean_up").await;
    assert_eq!(done.record.status, Status::Errored);
    let messages: Vec<String> =
        instance.engine.errors("0001_hanging_clean_up").await.unwrap().into_iter().map(|error| error.message).collect();
    assert_eq!(
        messages,
        ["operation 0 failed: the mutation broke; ending the work it left running did not finish within the rollback timeout of 1 s: \
          check system.mutations and system.processes before resuming"]
    );
    instance.engine.resume("0001_hanging_clean_up", TESTER).await.unwrap();
}
