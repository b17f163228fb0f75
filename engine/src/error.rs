//! The engine's one error type: what went wrong, worded for the operator who has to act on it.

use crate::parameters::ParameterError;
use crate::status::{IllegalAction, IllegalMove};

/// Every failure the engine reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach Postgres at {url}: {source}. Is it running? Start the local one with `scripts/services start` or set AMIGO_DATABASE_URL.")]
    PostgresUnreachable { url: String, source: sqlx::Error },
    #[error("cannot reach ClickHouse at {url}: {message}. Is it running? Start the local one with `scripts/services start` or set AMIGO_CLICKHOUSE_URL.")]
    ClickHouseUnreachable { url: String, message: String },
    #[error(
        "ClickHouse at {url} has no cluster {cluster:?} in system.clusters; check AMIGO_CLICKHOUSE_CLUSTER and the server's remote_servers"
    )]
    UnknownCluster { url: String, cluster: String },
    #[error("node {node} of cluster {cluster} has no HTTP address on port {port}; check AMIGO_CLICKHOUSE_HTTP_PORT_OFFSET")]
    NodeWithoutHttpAddress { cluster: String, node: String, port: i32 },
    #[error("no replica of shard {shard} of cluster {cluster} answers with writable tables ({replicas}); start one or let it reconnect to ZooKeeper, then resume")]
    ShardUnreachable { cluster: String, shard: u32, replicas: String },
    #[error("the ClickHouse node at {url} stopped answering (nothing within {seconds} s); once it answers again, resume")]
    NodeSilent { url: String, seconds: u64 },
    #[error("shard {shard} (node {node}): {source}")]
    OnShard { shard: u32, node: String, source: Box<Error> },
    #[error("Postgres schema migration failed: {0}")]
    SchemaMigration(#[from] sqlx::migrate::MigrateError),
    #[error("Postgres error: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("ClickHouse error: {}", with_causes(.0))]
    ClickHouse(#[from] ::clickhouse::error::Error),
    #[error("ClickHouse query {query_id} ran longer than its timeout of {seconds} s")]
    QueryTimeout { query_id: String, seconds: u64 },
    #[error("no migration named {}; `amigo migrations list` shows them", quoted_prefix(.0))]
    UnknownMigration(String),
    #[error(transparent)]
    IllegalAction(#[from] IllegalAction),
    #[error(transparent)]
    IllegalMove(#[from] IllegalMove),
    #[error(transparent)]
    Parameter(#[from] ParameterError),
    #[error("{migration} changed meanwhile (another request won); reload and try again")]
    ChangedMeanwhile { migration: String },
    #[error("cannot start {migration}: {active} is already starting or running, and only one migration runs at a time")]
    AnotherMigrationActive { migration: String, active: String },
    #[error("{migration} is already being stopped (requested by {by})")]
    AlreadyStopping { migration: String, by: String },
    #[error("cannot start {migration}: this instance runs amigo {instance}, and it runs on amigo {range} only")]
    VersionOutOfRange { migration: String, instance: String, range: String },
    #[error("cannot start {migration}: it depends on {dependency}, which is {status}; complete {dependency} first")]
    DependencyNotCompleted { migration: String, dependency: String, status: String },
    #[error("setting {key}: {reason}")]
    InvalidSetting { key: String, reason: String },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the runner lost its lease on {migration}: another runner declared it dead")]
    LeaseLost { migration: String },
    #[error("stored state is corrupt: {0}")]
    Corrupt(String),
    /// Migration files amigo could not fully read, or a set of migrations that does not hold together: nothing
    /// of them is recorded or run.
    #[error("{}", problem_lines(.0))]
    InvalidMigrations(Vec<crate::loader::Problem>),
    /// A failure inside a migration's own code, in its words.
    #[error("{0}")]
    Migration(String),
    #[error("wrong email or password")]
    LoginRefused,
    #[error("too many failed logins; try again in {} minute{}", minutes, if *minutes == 1 { "" } else { "s" })]
    TooManyLoginAttempts { minutes: i64 },
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
}

impl Error {
    /// True when ClickHouse refused the connection: nothing was sent, so the statement did not run.
    pub fn is_connection_refused(&self) -> bool {
        let Error::ClickHouse(error) = self else { return false };
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(error) = cause {
            if error.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
                return true;
            }
            cause = error.source();
        }
        false
    }

    /// True for errors caused by the request itself (bad name, bad state, bad value), as opposed to failures
    /// of the databases or the migration: what a web server answers with 4xx.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::UnknownMigration(_)
                | Error::IllegalAction(_)
                | Error::Parameter(_)
                | Error::ChangedMeanwhile { .. }
                | Error::AnotherMigrationActive { .. }
                | Error::AlreadyStopping { .. }
                | Error::VersionOutOfRange { .. }
                | Error::DependencyNotCompleted { .. }
                | Error::InvalidSetting { .. }
                | Error::InvalidRequest(_)
                | Error::LoginRefused
                | Error::TooManyLoginAttempts { .. }
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The name quoted and escaped, cut after 100 characters: an error must stay one readable line whatever
/// name it was given.
fn quoted_prefix(name: &str) -> String {
    const SHOWN: usize = 100;
    match name.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}... ({} characters)", &name[..cut], name.chars().count()),
        None => format!("{name:?}"),
    }
}

/// A count, then each problem on a line of its own as `path:line:column: message`.
fn problem_lines(problems: &[crate::loader::Problem]) -> String {
    let count = problems.len();
    let mut text = format!("{count} problem{} in the migrations; nothing was loaded:", if count == 1 { "" } else { "s" });
    for problem in problems {
        text.push_str(&format!("\n{problem}"));
    }
    text
}

/// `error`'s message followed by those of its causes it does not already include: the ClickHouse client's
/// "network error: client error (Connect)" says little without the "Connection refused" beneath it.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(source) = cause {
        let text = source.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        cause = source.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_told_apart_from_other_failures() {
        let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = ::clickhouse::Client::default().with_url(format!("http://127.0.0.1:{closed_port}"));
        let refused = Error::from(client.query("SELECT 1").execute().await.unwrap_err());
        assert!(refused.is_connection_refused(), "{refused}");
        assert!(!Error::Migration("connection refused".into()).is_connection_refused());
    }
}
