//! What the server's test binaries share: the `amigo` command pointed at a test's databases.

use std::process::Command;

use engine::EngineConfig;

/// The `amigo` command with `args`, pointed at the databases in `config`, logging warnings and errors.
pub fn amigo_command(config: &EngineConfig, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_amigo"));
    command
        .args(args)
        .env("AMIGO_DATABASE_URL", &config.database_url)
        .env("AMIGO_CLICKHOUSE_URL", &config.clickhouse_url)
        .env("AMIGO_CLICKHOUSE_DATABASE", &config.clickhouse_database)
        .env("AMIGO_DEMO", "on")
        .env("AMIGO_LOG", "warn");
    command
}
