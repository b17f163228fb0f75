//! The writes that end a run (completed; errored with its error; rolled back) when Postgres cuts their
//! connection, as a restarting Postgres does: each is retried and recorded once, instead of the run ending as
//! a runner failure or being left to the lease timeout.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::definition::{nothing_to_undo, MigrationDefinition, Operation};
use engine::status::Status;
use engine::testing::{is_settled, spawn_runner, wait_for};
use engine::{Engine, Error};
use serde_json::json;
use sqlx::{PgPool, Postgres, Transaction};

const TESTER: &str = "tester@example.com";

/// A lock on one table, taken by an operation as it ends, so that the runner's next write to that table waits
/// for it; the test then cuts the waiting connection and lets the lock go.
#[derive(Clone, Default)]
struct TableLock(Arc<Mutex<Option<Transaction<'static, Postgres>>>>);

impl TableLock {
    async fn take(&self, database_url: &str, table: &str) {
        let mut transaction = PgPool::connect(database_url).await.unwrap().begin().await.unwrap();
        sqlx::query(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")).execute(&mut *transaction).await.unwrap();
        *self.0.lock().unwrap() = Some(transaction);
    }

    /// Waits until a write waits for the lock, ends that write's connection, then releases the lock.
    async fn cut_the_waiting_write(&self, table: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let waiting = "SELECT pg_locks.pid FROM pg_locks JOIN pg_class ON pg_class.oid = pg_locks.relation
                       WHERE pg_class.relname = $1 AND NOT pg_locks.granted";
        loop {
            let transaction = self.0.lock().unwrap().take();
            if let Some(mut transaction) = transaction {
                let writers: Vec<i32> = sqlx::query_scalar(waiting).bind(table).fetch_all(&mut *transaction).await.unwrap();
                if let Some(writer) = writers.first() {
                    sqlx::query("SELECT pg_terminate_backend($1)").bind(writer).execute(&mut *transaction).await.unwrap();
                    transaction.rollback().await.unwrap();
                    return;
                }
                *self.0.lock().unwrap() = Some(transaction);
            }
            assert!(Instant::now() < deadline, "no write waited for {table}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// One operation that takes `lock` on `table` as it ends, failing when `fails`.
fn locks_as_it_ends(name: &str, table: &'static str, fails: bool, lock: &TableLock, database_url: &str) -> MigrationDefinition {
    let (lock, database_url) = (lock.clone(), database_url.to_string());
    MigrationDefinition::new(name, "locks a table of amigo's as it ends").operation(Operation::rust(
        "lock, then end",
        move |_| {
            let (lock, database_url) = (lock.clone(), database_url.clone());
            async move {
                lock.take(&database_url, table).await;
                if fails {
                    return Err(Error::Migration("it broke".into()));
                }
                Ok(())
            }
        },
        nothing_to_undo,
    ))
}

#[tokio::test]
async fn a_run_whose_last_write_loses_its_connection_is_recorded_once_as_it_ended() {
    let config = engine::testing::fresh_databases().await;
    let lock = TableLock::default();
    // The write each case cuts: the end of a completed run, the error of a failed one, the end of a rollback.
    let cases = [
        ("0001_completes", "runner_lease", false, true, Status::Completed, vec![]),
        ("0002_fails", "async_migration_error", true, false, Status::Errored, vec!["operation 0 failed: it broke"]),
        ("0003_fails_and_rolls_back", "runner_lease", true, true, Status::RolledBack, vec!["operation 0 failed: it broke"]),
    ];
    let definitions =
        cases.iter().map(|(name, table, fails, ..)| locks_as_it_ends(name, table, *fails, &lock, &config.database_url)).collect();
    let engine = Engine::connect(&config, definitions).await.unwrap();
    let _runner = spawn_runner(&engine);
    for (name, table, _, auto_rollback, expected, errors) in cases {
        engine.update_setting("disable_auto_rollback", &json!(!auto_rollback), TESTER).await.unwrap();
        engine.start(name, TESTER, &serde_json::Map::new()).await.unwrap();
        lock.cut_the_waiting_write(table).await;
        let done = wait_for(&engine, name, Duration::from_secs(20), "settled", is_settled).await;
        let messages: Vec<String> = engine.errors(name).await.unwrap().into_iter().map(|error| error.message).collect();
        assert_eq!(done.record.status, expected, "{name}: {messages:?}");
        assert_eq!(messages, errors, "{name}");
    }
}
