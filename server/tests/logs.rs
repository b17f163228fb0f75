//! The `amigo` binary's logs: with `AMIGO_LOG_JSON` every line is a JSON object and the runner's lines name
//! the migration and the ClickHouse query id; no password, session token or metrics token ever reaches them,
//! even at debug.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use demo::migrations::e2e::COPY_NUMBERS;
use engine::EngineConfig;
use serde_json::Value;
use support::amigo_command;

const PASSWORD: &str = "a very secret password 7f3a";
const METRICS_TOKEN: &str = "metrics-token-0b1d9e4c77a2";

/// The `amigo` command with `args`, pointed at the databases in `config`, logging JSON at `filter`.
fn amigo(config: &EngineConfig, filter: &str, args: &[&str]) -> Command {
    let mut command = amigo_command(config, args);
    command.env("AMIGO_LOG", filter).env("AMIGO_LOG_JSON", "true");
    command
}

fn json_lines(stderr: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}")))
        .collect()
}

/// The value of `field` on the line's event or on any span it is in.
fn field<'a>(line: &'a Value, field: &str) -> Option<&'a str> {
    line["fields"][field].as_str().or_else(|| line["spans"].as_array()?.iter().rev().find_map(|span| span[field].as_str()))
}

#[tokio::test]
async fn json_logs_of_a_run_name_the_migration_and_the_query_id() {
    let config = engine::testing::fresh_databases().await;
    let output = amigo(&config, "info", &["migrations", "start", COPY_NUMBERS, "--param", "rows=5", "--wait"])
        .env("AMIGO_DEMO", "e2e")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines = json_lines(&output.stderr);
    let statements: Vec<&Value> = lines.iter().filter(|line| line["fields"]["message"] == "statement finished").collect();
    assert!(statements.len() >= 3, "one line per statement: {lines:#?}");
    for line in statements {
        assert_eq!(field(line, "migration"), Some(COPY_NUMBERS), "{line}");
        let query_id = field(line, "query_id").unwrap_or_else(|| panic!("no query_id: {line}"));
        assert!(query_id.starts_with(&format!("amigo-{COPY_NUMBERS}-op")), "{line}");
        assert!(line["fields"]["elapsed_ms"].is_u64(), "{line}");
    }
}

/// Sends one HTTP/1.1 request to `address` and returns the whole response.
fn http(address: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn login_request(host: &str, email: &str, password: &str) -> String {
    let body = format!("email={}&password={}", email.replace('@', "%40"), password.replace(' ', "+"));
    format!(
        "POST /api/login HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn no_password_session_token_or_metrics_token_is_logged_even_at_debug() {
    let config = engine::testing::fresh_databases().await;
    let created = amigo(&config, "debug", &["users", "create", "--email", "admin@example.com"])
        .env("AMIGO_USER_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let server = amigo(&config, "debug", &["serve", "--listen", &address])
        .env("AMIGO_METRICS_TOKEN", METRICS_TOKEN)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&address).is_err() {
        assert!(Instant::now() < deadline, "amigo serve did not listen on {address}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let refused = http(&address, &login_request(&address, "admin@example.com", &format!("{PASSWORD}-wrong")));
    assert!(refused.contains("wrong email or password"), "{refused}");
    let accepted = http(&address, &login_request(&address, "admin@example.com", PASSWORD));
    let token = accepted
        .lines()
        .find_map(|line| line.strip_prefix("set-cookie: amigo_session="))
        .and_then(|cookie| cookie.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie: {accepted}"))
        .to_string();
    assert!(token.len() >= 32, "{token}");
    let listed = http(
        &address,
        &format!(
            "POST /api/list_migrations HTTP/1.1\r\nHost: {address}\r\nCookie: amigo_session={token}\r\nContent-Type: application/json\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        ),
    );
    assert!(listed.starts_with("HTTP/1.1 200"), "{listed}");
    let metrics = http(
        &address,
        &format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {METRICS_TOKEN}\r\nConnection: close\r\n\r\n"),
    );
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");

    engine::testing::send_signal(server.id(), "TERM");
    let output = server.wait_with_output().unwrap();
    let logs = [String::from_utf8_lossy(&created.stderr), String::from_utf8_lossy(&output.stderr)].concat();
    assert!(logs.lines().count() > 10, "debug logs were written: {logs}");
    for secret in [PASSWORD, "very secret password", &token, METRICS_TOKEN] {
        assert!(!logs.contains(secret), "{secret:?} is in the logs:\n{logs}");
    }
    let url_encoded = PASSWORD.replace(' ', "+");
    assert!(!logs.contains(&url_encoded), "the form-encoded password is in the logs");
}
