//! Connecting to real Postgres and ClickHouse: the schema is applied, versions are read, and an unreachable
//! server is reported with its URL.

use engine::{Engine, EngineConfig, Error};

#[tokio::test]
async fn connect_applies_the_schema_and_reads_both_versions() {
    let config = engine::testing::fresh_databases().await;
    let engine = Engine::connect(&config, vec![]).await.expect("connect");

    let tables: Vec<String> =
        sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
            .fetch_all(engine.store().pool())
            .await
            .unwrap();
    for table in ["async_migration", "async_migration_error", "audit_log", "runner_lease", "runtime_setting"] {
        assert!(tables.iter().any(|name| name == table), "{table} missing from {tables:?}");
    }
    assert!(engine.store().server_version().await.unwrap().starts_with("PostgreSQL "));
    let clickhouse_version = engine.clickhouse().server_version().await.unwrap();
    assert_eq!(engine.clickhouse().version().to_string(), clickhouse_version);
    assert!(engine.clickhouse().version().at_least(18, 1), "{clickhouse_version}");
    engine.check_health().await.expect("both databases healthy");

    // Connecting again is a no-op for the schema.
    Engine::connect(&config, vec![]).await.expect("second connect");
}

#[tokio::test]
async fn an_unreachable_postgres_is_named_in_the_error() {
    let mut config = engine::testing::fresh_databases().await;
    config.database_url = "postgres://amigo:secret@127.0.0.1:9/amigo".into();
    let error = Engine::connect(&config, vec![]).await.err().expect("connect must fail");
    assert!(matches!(error, Error::PostgresUnreachable { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("127.0.0.1:9"), "{message}");
    assert!(!message.contains("secret"), "password leaked: {message}");
    assert!(message.contains("AMIGO_DATABASE_URL"), "{message}");
}

#[tokio::test]
async fn an_unreachable_clickhouse_is_named_in_the_error() {
    let config = EngineConfig { clickhouse_url: "http://127.0.0.1:9".into(), ..engine::testing::fresh_databases().await };
    let error = Engine::connect(&config, vec![]).await.err().expect("connect must fail");
    assert!(matches!(error, Error::ClickHouseUnreachable { .. }), "{error:?}");
    assert!(error.to_string().contains("http://127.0.0.1:9"), "{error}");
}
