//! The ClickHouse side: one HTTP client per engine, the server's version, statements sent under query ids,
//! and killing and watching those queries.

use std::sync::Arc;
use std::time::Duration;

use crate::capabilities::{Capabilities, DatabaseEngine, PROBED_SETTINGS};
use crate::version::Version;
use crate::{Error, Result};

/// How long the startup check waits for ClickHouse before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a kill waits for ClickHouse's answer: a server that does not answer (paused, cut off) must not
/// hold up the runner that records why its migration stopped.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings and limits sent with one statement.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    pub settings: Vec<(String, String)>,
    /// Sent as `max_execution_time`, and enforced on the client too.
    pub timeout: Option<Duration>,
}

/// What `system.processes` says of a running query.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Deserialize)]
pub struct QueryProgress {
    pub elapsed: f64,
    pub read_rows: u64,
    pub total_rows_approx: u64,
    pub written_rows: u64,
}

/// The engine's ClickHouse connection: the client bound to the product's database, what the server supports,
/// and the cluster it belongs to, if any.
#[derive(Clone)]
pub struct ClickHouse {
    client: ::clickhouse::Client,
    url: String,
    database: String,
    capabilities: Arc<Capabilities>,
    cluster: Option<String>,
}

impl ClickHouse {
    /// Checks that the server answers, creates the database if missing, and learns what the server can do
    /// ([`Capabilities`]): its version, the engine of the database and the settings it knows.
    ///
    /// Schema validation in the `clickhouse` crate needs `RowBinaryWithNamesAndTypes`, which old servers
    /// (Debian's 18.16) do not speak: it is switched on for every server that does.
    pub async fn connect(url: &str, database: &str) -> Result<ClickHouse> {
        let unreachable = |message: String| Error::ClickHouseUnreachable { url: url.to_string(), message };
        let server = ::clickhouse::Client::default().with_url(url).with_validation(false);
        let version_text: String = tokio::time::timeout(CONNECT_TIMEOUT, server.query("SELECT version()").fetch_one())
            .await
            .map_err(|_| unreachable(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())))?
            .map_err(|error| unreachable(error.to_string()))?;
        let version =
            Version::parse(&version_text).ok_or_else(|| unreachable(format!("it answered {version_text:?} to SELECT version()")))?;
        server.query(&format!("CREATE DATABASE IF NOT EXISTS {}", quote_identifier(database))).execute().await?;
        let engine: String = server.query("SELECT engine FROM system.databases WHERE name = ?").bind(database).fetch_one().await?;
        let known_settings: Vec<String> =
            server.query("SELECT name FROM system.settings WHERE has(?, name)").bind(PROBED_SETTINGS).fetch_all().await?;
        let capabilities = Capabilities::new(version, DatabaseEngine::from_name(&engine), known_settings);
        let client = server.with_database(database).with_validation(capabilities.validates_rows());
        Ok(ClickHouse { client, url: url.to_string(), database: database.to_string(), capabilities: Arc::new(capabilities), cluster: None })
    }

    /// This connection, speaking for cluster `name` (see [`ClickHouse::on_cluster`]).
    pub fn with_cluster(self, name: &str) -> ClickHouse {
        ClickHouse { cluster: Some(name.to_string()), ..self }
    }

    /// A connection to another node of the same cluster at `url`: same database, version and cluster, nothing
    /// checked (the node may be down; its first statement says so).
    pub fn on_node(&self, url: &str) -> ClickHouse {
        let client =
            ::clickhouse::Client::default().with_url(url).with_database(&self.database).with_validation(self.capabilities.validates_rows());
        ClickHouse { client, url: url.to_string(), ..self.clone() }
    }

    /// The cluster name, when the product's ClickHouse is a cluster.
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// ` ON CLUSTER `name`` to add to a DDL statement that every node must run, or nothing on a single server.
    pub fn on_cluster(&self) -> String {
        self.cluster.as_deref().map_or_else(String::new, |name| format!(" ON CLUSTER {}", quote_identifier(name)))
    }

    pub fn client(&self) -> &::clickhouse::Client {
        &self.client
    }

    /// A client of the same server that names no database, so that it speaks in the server's default one.
    pub fn server_default_database_client(&self) -> ::clickhouse::Client {
        ::clickhouse::Client::default().with_url(&self.url).with_validation(false)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// `table` in the engine's database, both quoted: `` `db`.`table` ``.
    pub fn qualified(&self, table: &str) -> String {
        format!("{}.{}", quote_identifier(&self.database), quote_identifier(table))
    }

    /// The version read at connect time.
    pub fn version(&self) -> &Version {
        &self.capabilities.version
    }

    /// What the server and the product's database support, learnt at connect time.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// `DROP TABLE IF EXISTS qualified_table` on every node (`ON CLUSTER`), returning once the table is gone,
    /// its ZooKeeper path included ([`Capabilities::drop_table_suffix`]).
    pub fn drop_table_sql(&self, qualified_table: &str) -> String {
        format!("DROP TABLE IF EXISTS {qualified_table}{}{}", self.on_cluster(), self.capabilities.drop_table_suffix())
    }

    /// Asks the server for its version now (a live check, unlike [`ClickHouse::version`]).
    pub async fn server_version(&self) -> Result<String> {
        Ok(self.client.query("SELECT version()").fetch_one().await?)
    }

    /// Asks the server for its version every `interval` and resolves, with the error to report, once it does not
    /// answer within `limit`; pending as long as it answers.
    pub async fn stops_answering(&self, interval: Duration, limit: Duration) -> Error {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match tokio::time::timeout(limit, self.server_version()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return error,
                Err(_) => return Error::NodeSilent { url: self.url.clone(), seconds: limit.as_secs() },
            }
        }
    }

    /// Runs one statement under `query_id` with `options`.
    pub async fn execute(&self, sql: &str, query_id: &str, options: &QueryOptions) -> Result<()> {
        // Raw: the statement is rendered already, and a `?` in it (a string literal, a user's SQL) is no placeholder.
        let mut query = self.client.query_raw(sql).with_setting("query_id", query_id);
        for (name, value) in &options.settings {
            query = query.with_setting(name, value);
        }
        let Some(timeout) = options.timeout else {
            return Ok(query.execute().await?);
        };
        let query = query.with_setting("max_execution_time", timeout.as_secs().max(1).to_string());
        match tokio::time::timeout(timeout + Duration::from_secs(1), query.execute()).await {
            Ok(outcome) => Ok(outcome?),
            Err(_) => {
                self.kill_query(query_id).await?;
                Err(Error::QueryTimeout { query_id: query_id.into(), seconds: timeout.as_secs() })
            }
        }
    }

    /// What the server says when it parses `sql` with `EXPLAIN AST`, which runs nothing (ask
    /// [`Capabilities::explains_syntax`] first): `None` when it parses, else the server's refusal, shortened.
    /// An error that is not the server's answer (no connection) is an error.
    pub async fn refusal_to_parse(&self, sql: &str) -> Result<Option<String>> {
        const EXPLAIN: &str = "EXPLAIN AST ";
        let Err(error) = self.client.query_raw(&format!("{EXPLAIN}{sql}")).execute().await else { return Ok(None) };
        let message = error.to_string();
        let Some((_, refusal)) = message.split_once("DB::Exception: ") else { return Err(error.into()) };
        // The list of what the parser expected runs to hundreds of words; the position and the text at it say enough.
        let refusal = refusal.split(" Expected one of").next().unwrap_or(refusal);
        let mut refusal = refusal.split(" (version ").next().unwrap_or(refusal).trim_end_matches(['.', ':', ' ', '\n']).to_string();
        // The server counts the position from the start of what it was sent: make it the statement's.
        const AT: &str = "failed at position ";
        if let Some(start) = refusal.find(AT).map(|found| found + AT.len()) {
            let digits = refusal[start..].find(|character: char| !character.is_ascii_digit()).map_or(refusal.len(), |end| start + end);
            if let Ok(position) = refusal[start..digits].parse::<usize>() {
                refusal.replace_range(start..digits, &position.saturating_sub(EXPLAIN.len()).to_string());
            }
        }
        Ok(Some(refusal))
    }

    /// Kills the query with this id and waits until it is gone (`KILL QUERY ... SYNC`). Killing a query that
    /// already ended is not an error; no answer within a few seconds is.
    pub async fn kill_query(&self, query_id: &str) -> Result<()> {
        self.kill_within_timeout(self.client.query("KILL QUERY WHERE query_id = ? SYNC").bind(query_id).execute()).await
    }

    /// Kills every query whose id begins with `prefix` and contains `part`, like [`ClickHouse::kill_query`].
    pub async fn kill_queries_named(&self, prefix: &str, part: &str) -> Result<()> {
        let sql = "KILL QUERY WHERE substring(query_id, 1, length(?)) = ? AND position(query_id, ?) > 0 SYNC";
        self.kill_within_timeout(self.client.query(sql).bind(prefix).bind(prefix).bind(part).execute()).await
    }

    async fn kill_within_timeout(&self, kill: impl std::future::Future<Output = ::clickhouse::error::Result<()>>) -> Result<()> {
        match tokio::time::timeout(KILL_TIMEOUT, kill).await {
            Ok(outcome) => Ok(outcome?),
            Err(_) => Err(Error::ClickHouseUnreachable {
                url: self.url.clone(),
                message: format!("no answer to KILL QUERY within {} s", KILL_TIMEOUT.as_secs()),
            }),
        }
    }

    /// How many inserts the server is running that began at least `seconds` ago (other than amigo's own).
    /// Told by `query_kind` where the server reports it, by the statement's text before.
    pub async fn inserts_running_for(&self, seconds: f64) -> Result<u64> {
        let inserts = if self.capabilities.reports_query_kind() {
            "query_kind = 'Insert'"
        } else {
            "positionCaseInsensitive(query, 'insert') > 0 AND positionCaseInsensitive(query, 'system.processes') = 0"
        };
        let query = format!("SELECT count() FROM system.processes WHERE {inserts} AND elapsed >= ? AND NOT startsWith(query_id, 'amigo-')");
        Ok(self.client.query(&query).bind(seconds).fetch_one().await?)
    }

    /// The progress of a running query, or `None` when it is not running.
    pub async fn query_progress(&self, query_id: &str) -> Result<Option<QueryProgress>> {
        Ok(self
            .client
            .query("SELECT elapsed, read_rows, total_rows_approx, written_rows FROM system.processes WHERE query_id = ?")
            .bind(query_id)
            .fetch_optional()
            .await?)
    }
}

/// What `system.mutations` says of one mutation of a table.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct MutationStatus {
    pub mutation_id: String,
    pub command: String,
    /// Parts still to rewrite.
    pub parts_to_do: i64,
    pub is_done: u8,
    /// Why the last attempt on a part failed; always empty before 19.3, which does not report it.
    pub latest_fail_reason: String,
}

impl ClickHouse {
    /// The mutations of `table` in the engine's database, oldest first.
    pub async fn mutations(&self, table: &str) -> Result<Vec<MutationStatus>> {
        let fail_reason = if self.capabilities.kills_mutations() { "latest_fail_reason" } else { "''" };
        let query = format!(
            "SELECT mutation_id, command, toInt64(parts_to_do) AS parts_to_do, toUInt8(is_done) AS is_done,
                    toString({fail_reason}) AS latest_fail_reason
             FROM system.mutations WHERE database = ? AND table = ? ORDER BY create_time, length(mutation_id), mutation_id"
        );
        Ok(self.client.query(&query).bind(&self.database).bind(table).fetch_all().await?)
    }

    /// Asks the server to cancel a mutation of `table` (it stops after the part it is rewriting). Callers check
    /// [`Capabilities::kills_mutations`] first: older servers do not know the statement.
    pub async fn kill_mutation(&self, table: &str, mutation_id: &str) -> Result<()> {
        self.client
            .query("KILL MUTATION WHERE database = ? AND table = ? AND mutation_id = ?")
            .bind(&self.database)
            .bind(table)
            .bind(mutation_id)
            .execute()
            .await?;
        Ok(())
    }
}

/// Quotes a ClickHouse identifier with backticks, escaping what needs it.
pub fn quote_identifier(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_identifier("orders"), "`orders`");
        assert_eq!(quote_identifier("a`b"), "`a\\`b`");
    }
}
