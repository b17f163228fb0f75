//! amigo's migration engine: migration state in Postgres, the data it changes in ClickHouse.
//!
//! This crate knows nothing of HTTP or Leptos; the web server and the CLI drive it through [`Engine`].

pub mod clickhouse;
pub mod demo;
pub mod error;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::{Error, Result};

use crate::clickhouse::ClickHouse;
use crate::store::Store;

/// Where the engine finds its two databases.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub database_url: String,
    pub clickhouse_url: String,
    pub clickhouse_database: String,
}

/// The engine's handle: cheap to clone, shared by the web server, the runner and the CLI.
#[derive(Clone)]
pub struct Engine {
    store: Store,
    clickhouse: ClickHouse,
}

impl Engine {
    /// Connects to both databases, applies the Postgres schema and checks that ClickHouse answers.
    pub async fn connect(config: &EngineConfig) -> Result<Engine> {
        let store = Store::connect(&config.database_url).await?;
        store.migrate().await?;
        let clickhouse = ClickHouse::connect(&config.clickhouse_url, &config.clickhouse_database).await?;
        Ok(Engine { store, clickhouse })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn clickhouse(&self) -> &ClickHouse {
        &self.clickhouse
    }

    /// Checks that both databases answer now; used by `/healthz`.
    pub async fn check_health(&self) -> Result<()> {
        self.store.server_version().await?;
        self.clickhouse.server_version().await?;
        Ok(())
    }
}
