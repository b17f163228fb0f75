//! What the server's test binaries share: the `amigo` command pointed at a test's databases.

use std::process::Command;

use engine::EngineConfig;

/// The `amigo` command with `args`, pointed at the databases (and the cluster, if any) in `config`, with its
/// lease timeout, logging warnings and errors.
pub fn amigo_command(config: &EngineConfig, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_amigo"));
    command
        .args(args)
        .env("AMIGO_DATABASE_URL", &config.database_url)
        .env("AMIGO_CLICKHOUSE_URL", &config.clickhouse_url)
        .env("AMIGO_CLICKHOUSE_DATABASE", &config.clickhouse_database)
        .env("AMIGO_LEASE_TIMEOUT_SECONDS", config.lease_timeout.as_secs().to_string())
        .env("AMIGO_DEMO", "on")
        .env("AMIGO_LOG", "warn");
    if let Some(cluster) = &config.clickhouse_cluster {
        command.env("AMIGO_CLICKHOUSE_CLUSTER", cluster);
    }
    if let Some(offset) = config.clickhouse_http_port_offset {
        command.env("AMIGO_CLICKHOUSE_HTTP_PORT_OFFSET", offset.to_string());
    }
    command
}
