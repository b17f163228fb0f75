//! Test support: a fresh Postgres database and a fresh ClickHouse database per test, on the servers that
//! `AMIGO_DATABASE_URL` and `AMIGO_CLICKHOUSE_URL` name (`scripts/services env` prints them).

use sqlx::Connection;

use crate::clickhouse::quote_identifier;
use crate::EngineConfig;

const DEFAULT_DATABASE_URL: &str = "postgres://amigo@127.0.0.1:55432/amigo";
const DEFAULT_CLICKHOUSE_URL: &str = "http://127.0.0.1:58123";

/// Prefix of every database a test creates; `scripts/test` drops leftovers before a run.
pub const TEST_DATABASE_PREFIX: &str = "amigo_test_";

/// Creates an empty Postgres database and an empty ClickHouse database with one fresh name, and returns the
/// configuration that points the engine at them.
pub async fn fresh_databases() -> EngineConfig {
    let name = format!("{TEST_DATABASE_PREFIX}{}", uuid::Uuid::new_v4().simple());
    let server_url = std::env::var("AMIGO_DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
    let mut admin = sqlx::PgConnection::connect(&server_url)
        .await
        .unwrap_or_else(|error| panic!("tests need Postgres at {server_url} (run scripts/services start): {error}"));
    sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut admin).await.expect("create test database");
    let mut database_url = url::Url::parse(&server_url).expect("AMIGO_DATABASE_URL is a URL");
    database_url.set_path(&name);

    let clickhouse_url = std::env::var("AMIGO_CLICKHOUSE_URL").unwrap_or_else(|_| DEFAULT_CLICKHOUSE_URL.into());
    ::clickhouse::Client::default()
        .with_url(&clickhouse_url)
        .query(&format!("CREATE DATABASE {}", quote_identifier(&name)))
        .execute()
        .await
        .unwrap_or_else(|error| panic!("tests need ClickHouse at {clickhouse_url} (run scripts/services start): {error}"));

    EngineConfig::new(database_url.as_str(), &clickhouse_url, &name)
}

/// Waits up to `limit` for `condition` to hold of migration `name`, and returns it; panics with the record
/// when it never does.
pub async fn wait_for(
    engine: &crate::Engine,
    name: &str,
    limit: std::time::Duration,
    what: &str,
    condition: impl Fn(&crate::MigrationOverview) -> bool,
) -> crate::MigrationOverview {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let overview = engine.migration(name).await.expect("migration");
        if condition(&overview) {
            return overview;
        }
        assert!(std::time::Instant::now() < deadline, "{name} never became {what}: {:#?}", overview.record);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// True when a migration's run has ended: no runner, nothing queued, not starting or running.
pub fn is_settled(overview: &crate::MigrationOverview) -> bool {
    let record = &overview.record;
    !record.status.is_active() && record.runner_id.is_none() && record.requested_action.is_none()
}

/// Runs a runner for `engine` in the background until the returned sender is dropped or sends `true`.
pub fn spawn_runner(engine: &crate::Engine) -> tokio::sync::watch::Sender<bool> {
    let (shutdown, signal) = tokio::sync::watch::channel(false);
    let runner = crate::runner::Runner::new(engine.clone());
    tokio::spawn(async move { runner.run(signal).await });
    shutdown
}

/// The tables of the engine's ClickHouse database, in name order.
pub async fn table_names(engine: &crate::Engine) -> Vec<String> {
    engine
        .clickhouse()
        .client()
        .query("SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name")
        .fetch_all::<String>()
        .await
        .expect("list tables")
}
