//! The Postgres side: the connection pool, the embedded schema, and every read and write of state.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::{Error, Result};

/// The migration state store in Postgres.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Opens a pool and checks that the server answers within a few seconds.
    pub async fn connect(url: &str) -> Result<Store> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|source| Error::PostgresUnreachable { url: redact_password(url), source })?;
        Ok(Store { pool })
    }

    /// Applies the schema under `migrations/` (embedded at compile time).
    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("../migrations").run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The server's `version()` string.
    pub async fn server_version(&self) -> Result<String> {
        Ok(sqlx::query_scalar("SELECT version()").fetch_one(&self.pool).await?)
    }
}

/// The URL with any password replaced, fit for logs and error messages.
pub fn redact_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}
