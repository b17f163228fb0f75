//! The command line: every setting is a flag with an environment variable and a documented default.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

/// amigo: async data migrations for ClickHouse and Postgres, supervised from a staff page.
#[derive(Debug, Parser)]
#[command(name = "amigo", version)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
}

/// Where amigo finds its databases and how it logs.
#[derive(Debug, Args)]
pub struct Settings {
    /// Postgres URL holding amigo's state.
    #[arg(long, global = true, env = "AMIGO_DATABASE_URL", default_value = "postgres://amigo@127.0.0.1:55432/amigo")]
    pub database_url: String,
    /// ClickHouse HTTP URL of the product's data.
    #[arg(long, global = true, env = "AMIGO_CLICKHOUSE_URL", default_value = "http://127.0.0.1:58123")]
    pub clickhouse_url: String,
    /// ClickHouse database holding the product's tables.
    #[arg(long, global = true, env = "AMIGO_CLICKHOUSE_DATABASE", default_value = "amigo")]
    pub clickhouse_database: String,
    /// Log filter, in `tracing` env-filter syntax (e.g. `info`, `amigo=debug,sqlx=warn`).
    #[arg(long, global = true, env = "AMIGO_LOG", default_value = "info")]
    pub log: String,
}

impl Settings {
    pub fn engine_config(&self) -> engine::EngineConfig {
        engine::EngineConfig {
            database_url: self.database_url.clone(),
            clickhouse_url: self.clickhouse_url.clone(),
            clickhouse_database: self.clickhouse_database.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the staff page.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address the web server listens on.
    #[arg(long, env = "AMIGO_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Folder with the built browser bundle (`pkg/`) and public files.
    #[arg(long, env = "AMIGO_SITE_ROOT", default_value = "target/site")]
    pub site_root: String,
}

/// Sends logs to stderr, filtered by `filter`.
pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|error| {
        eprintln!("amigo: ignoring AMIGO_LOG={filter:?} ({error}); logging at info");
        tracing_subscriber::EnvFilter::new("info")
    });
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
