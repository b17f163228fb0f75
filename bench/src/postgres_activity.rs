//! What a run costs Postgres, read from the server's statistics: rows written per table
//! (`pg_stat_user_tables`: inserted + updated + deleted) and transactions committed, reads included
//! (`pg_stat_database.xact_commit`).
//!
//! Backends publish these counters when they go idle, at most once a second, and an idle backend whose
//! counters are still pending publishes them within 10 s: samples are taken after [`SETTLE`] without activity.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::Connection;

use crate::error::Result;

/// How long Postgres may take to publish a backend's counters once it is idle (`PGSTAT_IDLE_INTERVAL`, 10 s).
pub const SETTLE: Duration = Duration::from_secs(11);

/// The counters of one database at one moment, or the difference between two moments.
#[derive(Debug, Clone, Default)]
pub struct PostgresActivity {
    pub row_writes_by_table: BTreeMap<String, i64>,
    pub transactions: i64,
}

impl PostgresActivity {
    /// Reads the counters of the database `database_url` names, over a connection of its own (two
    /// transactions, counted in the next sample).
    pub async fn sample(database_url: &str) -> Result<PostgresActivity> {
        let mut connection = sqlx::PgConnection::connect(database_url).await?;
        let row_writes_by_table: Vec<(String, i64)> =
            sqlx::query_as("SELECT relname::text, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables")
                .fetch_all(&mut connection)
                .await?;
        let transactions: i64 = sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
            .fetch_one(&mut connection)
            .await?;
        connection.close().await?;
        Ok(PostgresActivity { row_writes_by_table: row_writes_by_table.into_iter().collect(), transactions })
    }

    /// What happened between `earlier` and this sample; tables without writes are left out.
    pub fn since(&self, earlier: &PostgresActivity) -> PostgresActivity {
        let row_writes_by_table = self
            .row_writes_by_table
            .iter()
            .map(|(table, writes)| (table.clone(), writes - earlier.row_writes_by_table.get(table).copied().unwrap_or(0)))
            .filter(|(_, writes)| *writes != 0)
            .collect();
        PostgresActivity { row_writes_by_table, transactions: self.transactions - earlier.transactions }
    }

    /// Both activities together.
    pub fn plus(&self, other: &PostgresActivity) -> PostgresActivity {
        let mut row_writes_by_table = self.row_writes_by_table.clone();
        for (table, writes) in &other.row_writes_by_table {
            *row_writes_by_table.entry(table.clone()).or_default() += writes;
        }
        PostgresActivity { row_writes_by_table, transactions: self.transactions + other.transactions }
    }

    pub fn row_writes(&self) -> i64 {
        self.row_writes_by_table.values().sum()
    }

    /// `table: writes` for each table written to, most written first.
    pub fn by_table(&self) -> String {
        let mut tables: Vec<(&String, &i64)> = self.row_writes_by_table.iter().collect();
        tables.sort_by(|left, right| right.1.cmp(left.1));
        tables.iter().map(|(table, writes)| format!("{table} {writes}")).collect::<Vec<_>>().join(", ")
    }
}
