//! The benchmark's own databases: a Postgres and a ClickHouse database per case, named `amigo_bench_` and a
//! fresh id, dropped when the case ends or the run is interrupted (100 M seeded events take several GB).
//!
//! Not the engine's test helper: `scripts/test` drops every `amigo_test_*` database when it starts, and on a
//! shared machine someone runs it while a long benchmark runs.

use std::sync::{Arc, Mutex};

use engine::clickhouse::quote_identifier;
use engine::EngineConfig;
use sqlx::Connection;

use crate::error::Result;

/// Prefix of every database the benchmark creates.
pub const DATABASE_PREFIX: &str = "amigo_bench_";

/// Creates databases on one Postgres server and one ClickHouse server, and remembers them until dropped.
/// Clones share the list, so that an interrupted run can drop what the case in progress created.
#[derive(Clone)]
pub struct Databases {
    postgres_url: String,
    clickhouse_url: String,
    created: Arc<Mutex<Created>>,
}

#[derive(Default)]
struct Created {
    postgres: Vec<String>,
    clickhouse: Vec<String>,
}

impl Databases {
    /// Databases on the Postgres server `postgres_url` connects to and on the ClickHouse at `clickhouse_url`.
    pub fn new(postgres_url: &str, clickhouse_url: &str) -> Databases {
        Databases { postgres_url: postgres_url.into(), clickhouse_url: clickhouse_url.into(), created: Arc::default() }
    }

    /// An empty Postgres database and an empty ClickHouse database, and the engine configuration for them.
    pub async fn fresh(&self) -> Result<EngineConfig> {
        let name = fresh_name();
        let config = EngineConfig::new(&self.fresh_postgres_database(&name).await?, &self.clickhouse_url, &name);
        self.created.lock().expect("database list lock").clickhouse.push(name.clone());
        self.clickhouse().query(&format!("CREATE DATABASE {}", quote_identifier(&name))).execute().await?;
        Ok(config)
    }

    /// `config` with a fresh Postgres database: a new engine state over the same ClickHouse data.
    pub async fn fresh_postgres(&self, config: &EngineConfig) -> Result<EngineConfig> {
        Ok(EngineConfig { database_url: self.fresh_postgres_database(&fresh_name()).await?, ..config.clone() })
    }

    /// Drops every database created so far, terminating the connections still open to them.
    pub async fn drop_all(&self) -> Result<()> {
        let created = std::mem::take(&mut *self.created.lock().expect("database list lock"));
        if !created.postgres.is_empty() {
            let mut admin = sqlx::PgConnection::connect(&self.postgres_url).await?;
            for name in &created.postgres {
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut admin).await?;
            }
            admin.close().await?;
        }
        for name in &created.clickhouse {
            self.clickhouse().query(&format!("DROP DATABASE IF EXISTS {}", quote_identifier(name))).execute().await?;
        }
        Ok(())
    }

    /// Creates Postgres database `name` and returns its URL.
    async fn fresh_postgres_database(&self, name: &str) -> Result<String> {
        self.created.lock().expect("database list lock").postgres.push(name.to_string());
        let mut admin = sqlx::PgConnection::connect(&self.postgres_url).await?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut admin).await?;
        admin.close().await?;
        Ok(with_database(&self.postgres_url, name))
    }

    fn clickhouse(&self) -> clickhouse::Client {
        clickhouse::Client::default().with_url(&self.clickhouse_url)
    }
}

fn fresh_name() -> String {
    format!("{DATABASE_PREFIX}{}", uuid::Uuid::new_v4().simple())
}

/// The Postgres URL `server_url` with `database` in place of the database it names (query kept).
fn with_database(server_url: &str, database: &str) -> String {
    let (address, query) = server_url.split_once('?').map_or((server_url, ""), |(address, query)| (address, query));
    let authority = address.find("://").map_or(0, |index| index + 3);
    let path = address[authority..].find('/').map_or(address.len(), |index| authority + index);
    let query = if query.is_empty() { String::new() } else { format!("?{query}") };
    format!("{}/{database}{query}", &address[..path])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_replaced_and_the_rest_kept() {
        assert_eq!(with_database("postgres://amigo@127.0.0.1:55432/amigo", "x"), "postgres://amigo@127.0.0.1:55432/x");
        assert_eq!(with_database("postgres://amigo@localhost", "x"), "postgres://amigo@localhost/x");
        assert_eq!(with_database("postgres://a:b@h:1/db?sslmode=disable", "x"), "postgres://a:b@h:1/x?sslmode=disable");
    }
}
