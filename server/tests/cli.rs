//! The `amigo` binary itself: a database that cannot be reached is a one-line error, not a panic.

use std::process::Command;

#[test]
fn serve_with_an_unreachable_postgres_fails_with_one_line_naming_the_url() {
    let output = Command::new(env!("CARGO_BIN_EXE_amigo"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("AMIGO_DATABASE_URL", "postgres://amigo@127.0.0.1:9/amigo")
        .output()
        .expect("run amigo");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let error_lines: Vec<&str> = stderr.lines().filter(|line| line.starts_with("amigo: ")).collect();
    assert_eq!(error_lines.len(), 1, "{stderr}");
    assert!(error_lines[0].contains("postgres://amigo@127.0.0.1:9/amigo"), "{stderr}");
    assert!(error_lines[0].contains("scripts/services start"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn serve_with_an_unreachable_clickhouse_fails_with_one_line_naming_the_url() {
    let output = Command::new(env!("CARGO_BIN_EXE_amigo"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("AMIGO_CLICKHOUSE_URL", "http://127.0.0.1:9")
        .output()
        .expect("run amigo");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let error_lines: Vec<&str> = stderr.lines().filter(|line| line.starts_with("amigo: ")).collect();
    assert_eq!(error_lines.len(), 1, "{stderr}");
    assert!(error_lines[0].contains("http://127.0.0.1:9"), "{stderr}");
}
