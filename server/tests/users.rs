//! `amigo users create`: the first account is staff, later ones only with --staff, and the password never
//! comes from an argument.

use std::process::{Command, Output, Stdio};

use engine::EngineConfig;

fn create_user(config: &EngineConfig, args: &[&str], password: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_amigo"));
    command
        .args(["users", "create"])
        .args(args)
        .env("AMIGO_DATABASE_URL", &config.database_url)
        .env("AMIGO_CLICKHOUSE_URL", &config.clickhouse_url)
        .env("AMIGO_CLICKHOUSE_DATABASE", &config.clickhouse_database)
        .env("AMIGO_LOG", "warn")
        .env_remove("AMIGO_USER_PASSWORD")
        .stdin(Stdio::null());
    if let Some(password) = password {
        command.env("AMIGO_USER_PASSWORD", password);
    }
    command.output().expect("run amigo")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn the_first_account_is_staff_and_others_need_the_flag() {
    let config = engine::testing::fresh_databases().await;
    let first = stdout(&create_user(&config, &["--email", "admin@example.com"], Some("correct horse battery")));
    assert!(first.contains("created staff account admin@example.com"), "{first}");
    assert!(first.contains("/login"), "{first}");
    let viewer = stdout(&create_user(&config, &["--email", "viewer@example.com"], Some("correct horse battery")));
    assert!(viewer.contains("not staff"), "{viewer}");
    let second = stdout(&create_user(&config, &["--email", "ops@example.com", "--staff"], Some("correct horse battery")));
    assert!(second.contains("created staff account ops@example.com"), "{second}");
}

#[tokio::test]
async fn without_a_password_or_a_terminal_nothing_is_created() {
    let config = engine::testing::fresh_databases().await;
    let output = create_user(&config, &["--email", "admin@example.com"], None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("set AMIGO_USER_PASSWORD"), "{stderr}");
    let created = create_user(&config, &["--email", "admin@example.com"], Some("correct horse battery"));
    assert!(stdout(&created).contains("created staff account"), "the refused attempt must not have created it");
}

#[tokio::test]
async fn a_short_password_is_refused_with_the_rule() {
    let config = engine::testing::fresh_databases().await;
    let output = create_user(&config, &["--email", "admin@example.com"], Some("short"));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("at least 10 characters"), "{stderr}");
}
