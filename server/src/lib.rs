//! amigo's server side: the command line, its commands and the web server, as a library so tests can drive
//! them in-process and a product's own binary can register its Rust migrations ([`run`]).

pub mod body_limit;
pub mod cli;
pub mod commands;
#[cfg(feature = "embedded-site")]
pub mod embedded_site;
pub mod error;
pub mod events;
#[cfg(any(test, feature = "testing"))]
pub mod input_properties;
pub mod metrics;
pub mod same_origin;
pub mod web;

pub use error::{Error, Result};

use std::process::ExitCode;

use clap::Parser;
use engine::definition::MigrationDefinition;
use engine::Engine;

use crate::cli::{Cli, Command, MigrationsCommand};

/// The `amigo` command line (serve, worker, migrations, users, seed) with `definitions` compiled in: the
/// product's migrations written in Rust, registered next to the files of `AMIGO_MIGRATIONS_DIR` (and the demo's
/// when `AMIGO_DEMO` asks). The `amigo` binary passes none; a product's binary is
/// `fn main() -> ExitCode { server::run(my_product::definitions()) }` (see examples/shop).
pub fn run(definitions: Vec<MigrationDefinition>) -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(&cli.settings.log, cli.settings.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("amigo: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_command(&cli, definitions)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("amigo: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run_command(cli: &Cli, mut definitions: Vec<MigrationDefinition>) -> Result<ExitCode> {
    let config = cli.settings.engine_config()?;
    definitions.extend(cli.settings.demo_definitions());
    match &cli.command {
        Command::Migrations(MigrationsCommand::Check { servers }) => {
            return commands::check_migrations(&config, definitions, *servers).await;
        }
        Command::Migrations(MigrationsCommand::New { name, recipe }) => return commands::new_migration(&config, name, *recipe),
        _ => {}
    }
    let engine = Engine::connect(&config, definitions).await?;
    match &cli.command {
        Command::Serve(serve) => web::serve(engine, serve).await,
        Command::Worker => commands::worker(engine).await,
        Command::Migrations(command) => commands::migrations(&engine, command).await,
        Command::CheckUpgrade { target } => commands::check_upgrade(&engine, target.as_deref()).await,
        Command::Seed(seed) => commands::seed(&engine, seed).await,
        Command::Users(command) => commands::users(&engine, command).await,
    }
}
