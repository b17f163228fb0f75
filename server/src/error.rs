//! The server's one error type: what `main` prints as a single line before exiting non-zero.

/// Everything the `amigo` binary can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] engine::Error),
    /// A flag or environment variable with a value amigo cannot use.
    #[error("{0}")]
    Usage(String),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: std::net::SocketAddr, source: std::io::Error },
    #[error("{0}\nFinish them (`amigo migrations list`), or start anyway with --skip-upgrade-check.")]
    UpgradeBlocked(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
