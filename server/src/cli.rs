//! The command line: every setting is a flag with an environment variable and a documented default, and
//! the subcommands other tools rely on (`amigo migrations ...`, `amigo check-upgrade`, ...).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// amigo: async data migrations for ClickHouse and Postgres, supervised from a staff page.
#[derive(Debug, Parser)]
#[command(name = "amigo", version)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
}

/// Where amigo finds its databases, which version it runs as, and how it logs.
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
    /// ClickHouse cluster (a name in `system.clusters`) the product's tables are spread over; empty for a single server.
    #[arg(long, global = true, env = "AMIGO_CLICKHOUSE_CLUSTER", default_value = "")]
    pub clickhouse_cluster: String,
    /// On a cluster whose nodes share a host: each node serves HTTP on its TCP port plus this offset (by default,
    /// every node serves HTTP on the port of the ClickHouse URL).
    #[arg(long, global = true, env = "AMIGO_CLICKHOUSE_HTTP_PORT_OFFSET", allow_hyphen_values = true)]
    pub clickhouse_http_port_offset: Option<i32>,
    /// The version this instance runs as, for migrations' version ranges and the upgrade gate.
    #[arg(long, global = true, env = "AMIGO_INSTANCE_VERSION", default_value = env!("CARGO_PKG_VERSION"))]
    pub instance_version: String,
    /// Seconds without a heartbeat after which a runner is taken for dead.
    #[arg(long, global = true, env = "AMIGO_LEASE_TIMEOUT_SECONDS", default_value_t = 10)]
    pub lease_timeout_seconds: u64,
    /// Log filter, in `tracing` env-filter syntax (e.g. `info`, `amigo=debug,sqlx=warn`).
    #[arg(long, global = true, env = "AMIGO_LOG", default_value = "info")]
    pub log: String,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "AMIGO_LOG_JSON")]
    pub log_json: bool,
    /// Folder of the product's migration files (`NAME.toml`, see docs/writing-migrations.md), loaded next to the
    /// migrations compiled into the binary.
    #[arg(long, global = true, env = "AMIGO_MIGRATIONS_DIR")]
    pub migrations_dir: Option<PathBuf>,
    /// Register the demo product's migrations (demo/): `on` its four, `e2e` those and the end-to-end specs'
    /// fast ones. For trying amigo on its demo data (scripts/dev sets `on`), never for a product's instance.
    #[arg(long, global = true, env = "AMIGO_DEMO", value_enum)]
    pub demo: Option<DemoMigrations>,
}

/// Which of the demo product's migrations the binary registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoMigrations {
    /// The demo's four migrations (demo/migrations/ and demo/src/migrations/).
    On,
    /// Those and the end-to-end specs' set (demo/src/migrations/e2e.rs).
    E2e,
}

impl Settings {
    pub fn engine_config(&self) -> Result<engine::EngineConfig, crate::Error> {
        let instance_version = engine::version::Version::parse(&self.instance_version).ok_or_else(|| {
            crate::Error::Usage(format!("AMIGO_INSTANCE_VERSION {:?} is not a version like 1.2.3", self.instance_version))
        })?;
        if self.lease_timeout_seconds == 0 {
            return Err(crate::Error::Usage("AMIGO_LEASE_TIMEOUT_SECONDS must be at least 1".into()));
        }
        let mut config = engine::EngineConfig::new(&self.database_url, &self.clickhouse_url, &self.clickhouse_database);
        config.instance_version = instance_version;
        config.clickhouse_cluster = Some(self.clickhouse_cluster.clone()).filter(|name| !name.is_empty());
        config.clickhouse_http_port_offset = self.clickhouse_http_port_offset;
        config.lease_timeout = Duration::from_secs(self.lease_timeout_seconds);
        config.migrations_dir = self.migrations_dir.clone().filter(|folder| !folder.as_os_str().is_empty());
        Ok(config)
    }

    /// The demo product's migrations when `AMIGO_DEMO` asks for them, else none.
    pub fn demo_definitions(&self) -> Vec<engine::definition::MigrationDefinition> {
        match self.demo {
            None => vec![],
            Some(DemoMigrations::On) => demo::migrations::all(),
            Some(DemoMigrations::E2e) => demo::migrations::all().into_iter().chain(demo::migrations::e2e::all()).collect(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the staff page, with a runner inside unless --no-runner.
    Serve(ServeArgs),
    /// Run migrations without the web server.
    Worker,
    /// List, start, stop, roll back and resume migrations.
    #[command(subcommand)]
    Migrations(MigrationsCommand),
    /// Check that every migration the target version needs has completed.
    CheckUpgrade {
        /// The version to upgrade to (default: this binary's instance version).
        #[arg(long = "to", value_name = "VERSION")]
        target: Option<String>,
    },
    /// Create the product's ClickHouse schema and fill it with demo events.
    Seed(SeedArgs),
    /// Manage the accounts that log in to the staff page.
    #[command(subcommand)]
    Users(UsersCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address the web server listens on.
    #[arg(long, env = "AMIGO_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Folder with the built browser bundle (`pkg/`) and public files [default: the bundle compiled into a
    /// binary built with the `embedded-site` feature, else `target/site`].
    #[arg(long, env = "AMIGO_SITE_ROOT")]
    pub site_root: Option<String>,
    /// Do not run migrations in this process (an `amigo worker` does).
    #[arg(long)]
    pub no_runner: bool,
    /// Bearer token that turns on `/metrics` for Prometheus (at least 16 characters); unset, the route is off.
    #[arg(long, env = "AMIGO_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Start even when migrations this version needs are not completed.
    #[arg(long, env = "AMIGO_SKIP_UPGRADE_CHECK")]
    pub skip_upgrade_check: bool,
}

#[derive(Debug, Subcommand)]
pub enum MigrationsCommand {
    /// List every migration with its status and progress.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Start a migration.
    Start {
        name: String,
        /// A parameter value, KEY=VALUE; repeat for more.
        #[arg(long = "param", value_name = "KEY=VALUE")]
        parameters: Vec<String>,
        /// Skip its precheck and health checks for this run, for this reason (shown on its row, audited).
        #[arg(long, value_name = "REASON")]
        skip_checks: Option<String>,
        /// Run it in this process and wait until it ends, showing progress.
        #[arg(long)]
        wait: bool,
    },
    /// Show what a run would send: each operation with its SQL rendered for these parameters; changes nothing.
    Plan {
        name: String,
        /// A parameter value, KEY=VALUE; repeat for more.
        #[arg(long = "param", value_name = "KEY=VALUE")]
        parameters: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Stop a running migration (kills its ClickHouse query).
    Stop {
        name: String,
        /// Roll it back after stopping.
        #[arg(long)]
        rollback: bool,
    },
    /// Roll back an errored migration (or a completed one, from the backup it kept).
    Rollback {
        name: String,
        /// Run the rollback in this process and wait until it ends.
        #[arg(long)]
        wait: bool,
    },
    /// Resume an errored migration from its current operation.
    Resume {
        name: String,
        /// Run it in this process and wait until it ends, showing progress.
        #[arg(long)]
        wait: bool,
    },
    /// Hold a running migration after the unit of work in progress (a partition, a batch): nothing is killed and
    /// its runner keeps it, until `continue`.
    Pause { name: String },
    /// Let a paused migration go on from where its runner holds it.
    Continue { name: String },
    /// Change parameters a running migration declares adjustable (threads, batch size …); its operations take
    /// them at their next unit of work.
    Adjust {
        name: String,
        /// A new value, as NAME=VALUE; repeat for several.
        #[arg(long = "param", value_name = "KEY=VALUE", required = true)]
        parameters: Vec<String>,
    },
    /// Let a run that holds its cut-over (ready to cut over) swap its tables now.
    CutOver { name: String },
    /// Drop the backup a completed migration kept (a rewrite's original table); it can no longer be rolled back.
    Finalize { name: String },
    /// Escape hatch: mark errored a migration whose runner stopped heartbeating, so that it can be resumed or
    /// rolled back.
    MarkErrored {
        name: String,
        /// Why, for the row and the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Escape hatch: mark completed an errored migration whose work was finished by hand.
    MarkCompleted {
        name: String,
        /// Why, for the row and the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Show a migration's error log.
    Errors {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Read every migration (AMIGO_MIGRATIONS_DIR's files and those compiled in) and print each, or every problem;
    /// needs neither database unless --servers.
    Check {
        /// Also have ClickHouse and Postgres parse every statement of the files (default parameters), running
        /// none of it.
        #[arg(long)]
        servers: bool,
    },
    /// Write a commented starting file AMIGO_MIGRATIONS_DIR/NAME.toml (never replacing one); needs neither database.
    New {
        /// The migration's name: lowercase letters, digits and _, beginning with a number (0100_orders_currency).
        name: String,
        /// What it starts from: sql, rewrite_table, mutation, move_partitions or postgres_batches.
        #[arg(long, default_value = "sql", value_parser = parse_recipe)]
        recipe: engine::scaffold::Recipe,
    },
}

fn parse_recipe(name: &str) -> Result<engine::scaffold::Recipe, String> {
    engine::scaffold::Recipe::from_name(name).map_err(|error| error.to_string())
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create an account; the password is read from AMIGO_USER_PASSWORD, or asked for on a terminal.
    Create {
        #[arg(long)]
        email: String,
        /// Let it use the staff page (the first account on an instance is staff anyway).
        #[arg(long)]
        staff: bool,
    },
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// How many events to generate.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Replace existing demo data instead of refusing.
    #[arg(long, conflicts_with = "if_empty")]
    pub replace: bool,
    /// Seed only when there are no events yet; otherwise leave the data as it is and succeed.
    #[arg(long)]
    pub if_empty: bool,
}

/// Sends logs to stderr, filtered by `filter`, as text or JSON lines.
pub fn init_logging(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|error| {
        eprintln!("amigo: ignoring AMIGO_LOG={filter:?} ({error}); logging at info");
        tracing_subscriber::EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
