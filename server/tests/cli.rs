//! The `amigo` binary itself: one-line errors for unreachable databases, and the upgrade gate's contract.

use std::process::{Command, Output};

use engine::EngineConfig;

/// Runs `amigo` with `args` against the databases in `config`.
fn amigo(config: &EngineConfig, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_amigo"))
        .args(args)
        .env("AMIGO_DATABASE_URL", &config.database_url)
        .env("AMIGO_CLICKHOUSE_URL", &config.clickhouse_url)
        .env("AMIGO_CLICKHOUSE_DATABASE", &config.clickhouse_database)
        .env("AMIGO_LOG", "warn")
        .output()
        .expect("run amigo")
}

fn the_one_error_line(output: &Output) -> String {
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let error_lines: Vec<&str> = stderr.lines().filter(|line| line.starts_with("amigo: ")).collect();
    assert_eq!(error_lines.len(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    error_lines[0].to_string()
}

#[tokio::test]
async fn serve_with_an_unreachable_postgres_fails_with_one_line_naming_the_url() {
    let config = EngineConfig { database_url: "postgres://amigo@127.0.0.1:9/amigo".into(), ..engine::testing::fresh_databases().await };
    let line = the_one_error_line(&amigo(&config, &["serve", "--listen", "127.0.0.1:0"]));
    assert!(line.contains("postgres://amigo@127.0.0.1:9/amigo"), "{line}");
    assert!(line.contains("scripts/services start"), "{line}");
}

#[tokio::test]
async fn serve_with_an_unreachable_clickhouse_fails_with_one_line_naming_the_url() {
    let config = EngineConfig { clickhouse_url: "http://127.0.0.1:9".into(), ..engine::testing::fresh_databases().await };
    let line = the_one_error_line(&amigo(&config, &["serve", "--listen", "127.0.0.1:0"]));
    assert!(line.contains("http://127.0.0.1:9"), "{line}");
}
