//! The `amigo` binary: parses the command line, sets up logging, and runs the chosen command.

use std::process::ExitCode;

use clap::Parser;
use engine::Engine;
use server::cli::{self, Cli, Command, MigrationsCommand};
use server::{commands, web};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(&cli.settings.log, cli.settings.log_json);
    match run(&cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("amigo: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let config = cli.settings.engine_config()?;
    if let Command::Migrations(MigrationsCommand::Check) = &cli.command {
        return Ok(commands::check_migrations(&config, cli.settings.migration_definitions())?);
    }
    let engine = Engine::connect_with(&config, cli.settings.migration_definitions()).await?;
    Ok(match &cli.command {
        Command::Serve(serve) => web::serve(engine, serve).await?,
        Command::Worker => commands::worker(engine).await?,
        Command::Migrations(command) => commands::migrations(&engine, command).await?,
        Command::CheckUpgrade { target } => commands::check_upgrade(&engine, target.as_deref()).await?,
        Command::Seed(seed) => commands::seed(&engine, seed).await?,
        Command::Users(command) => commands::users(&engine, command).await?,
    })
}
