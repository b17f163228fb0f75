//! The `amigo` binary: parses the command line, sets up logging, and runs the chosen command.

use std::process::ExitCode;

use clap::Parser;

use server::cli::{self, Cli, Command};
use server::web;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(&cli.settings.log);
    let outcome: anyhow::Result<()> = match &cli.command {
        Command::Serve(serve) => web::serve(&cli.settings, serve).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("amigo: {error:#}");
            ExitCode::FAILURE
        }
    }
}
