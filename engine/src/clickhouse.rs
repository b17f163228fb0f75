//! The ClickHouse side: one HTTP client per engine, the server's version, and statements sent with query ids.

use std::time::Duration;

use crate::{Error, Result};

/// How long the startup check waits for ClickHouse before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A ClickHouse server version, compared field by field (`18.16.1` < `24.3.2.23`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion(pub Vec<u32>);

impl ServerVersion {
    pub fn parse(text: &str) -> ServerVersion {
        ServerVersion(text.trim().split('.').map_while(|part| part.parse().ok()).collect())
    }

    /// True when this server is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        self.0.as_slice() >= [major, minor].as_slice()
    }
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        formatter.write_str(&parts.join("."))
    }
}

/// The engine's ClickHouse connection: the client bound to the product's database, and what the server supports.
#[derive(Clone)]
pub struct ClickHouse {
    client: ::clickhouse::Client,
    url: String,
    database: String,
    version: ServerVersion,
}

impl ClickHouse {
    /// Checks that the server answers, creates the database if missing, and reads the server version.
    ///
    /// Schema validation in the `clickhouse` crate needs `RowBinaryWithNamesAndTypes`, which old servers
    /// (Debian's 18.16) do not speak: it is switched on only for servers that do.
    pub async fn connect(url: &str, database: &str) -> Result<ClickHouse> {
        let unreachable = |message: String| Error::ClickHouseUnreachable { url: url.to_string(), message };
        let server = ::clickhouse::Client::default().with_url(url).with_validation(false);
        let version_text: String = tokio::time::timeout(CONNECT_TIMEOUT, server.query("SELECT version()").fetch_one())
            .await
            .map_err(|_| unreachable(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())))?
            .map_err(|error| unreachable(error.to_string()))?;
        let version = ServerVersion::parse(&version_text);
        server
            .query(&format!("CREATE DATABASE IF NOT EXISTS {}", quote_identifier(database)))
            .execute()
            .await?;
        let client = server.with_database(database).with_validation(version.at_least(24, 1));
        Ok(ClickHouse { client, url: url.to_string(), database: database.to_string(), version })
    }

    pub fn client(&self) -> &::clickhouse::Client {
        &self.client
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// The version read at connect time.
    pub fn version(&self) -> &ServerVersion {
        &self.version
    }

    /// Asks the server for its version now (a live check, unlike [`ClickHouse::version`]).
    pub async fn server_version(&self) -> Result<String> {
        Ok(self.client.query("SELECT version()").fetch_one().await?)
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
    fn versions_compare_numerically() {
        assert!(ServerVersion::parse("18.16.1").at_least(18, 16));
        assert!(!ServerVersion::parse("18.16.1").at_least(24, 1));
        assert!(ServerVersion::parse("24.3.2.23").at_least(24, 1));
        assert!(ServerVersion::parse("24.10.1") > ServerVersion::parse("24.9.7"));
        assert_eq!(ServerVersion::parse("23.8.16.40").to_string(), "23.8.16.40");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_identifier("events"), "`events`");
        assert_eq!(quote_identifier("a`b"), "`a\\`b`");
    }
}
