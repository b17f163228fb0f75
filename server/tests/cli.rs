//! The `amigo` binary itself: one-line errors for unreachable databases and bad input, the `list --json`
//! and upgrade-gate contracts other tools rely on.

mod support;

use std::process::Output;

use engine::EngineConfig;
use support::amigo_command;

/// Runs `amigo` with `args` against the databases in `config`.
fn amigo(config: &EngineConfig, args: &[&str]) -> Output {
    amigo_command(config, args).output().expect("run amigo")
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

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn list_json_prints_the_documented_fields_for_every_migration() {
    let config = engine::testing::fresh_databases().await;
    let output = amigo(&config, &["migrations", "list", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let migrations: Vec<serde_json::Value> = serde_json::from_str(&stdout(&output)).expect("a JSON array");
    assert!(!migrations.is_empty());
    for migration in &migrations {
        for field in [
            "name",
            "description",
            "status",
            "progress",
            "current_operation_index",
            "current_query_id",
            "started_at",
            "finished_at",
            "min_version",
            "max_version",
        ] {
            assert!(migration.get(field).is_some(), "{field} missing from {migration}");
        }
        assert_eq!(migration["status"], "not_started");
    }
    assert!(migrations.iter().any(|migration| migration["name"] == "0001_events_sort_key"));
}

#[tokio::test]
async fn check_upgrade_lists_pending_migrations_and_exits_non_zero() {
    let config = engine::testing::fresh_databases().await;
    let output = amigo(&config, &["check-upgrade", "--to", "99.0.0"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"List of async migrations to be applied:"));
    assert_eq!(lines.last(), Some(&"Async migrations are not completed."));
    assert!(lines.contains(&"- 0001_events_sort_key - Available on amigo versions 0.1.0 - 0.4.0"), "{text}");

    let output = amigo(&config, &["check-upgrade"]);
    assert!(output.status.success(), "this version needs nothing yet: {}", stdout(&output));
    let refusal = amigo(&config, &["check-upgrade", "--to", "banana"]);
    assert!(the_one_error_line(&refusal).contains("\"banana\" is not a version"));
}

#[tokio::test]
async fn serve_refuses_to_start_while_required_migrations_are_pending() {
    let config = engine::testing::fresh_databases().await;
    let mut command_line = amigo_command(&config, &["serve", "--listen", "127.0.0.1:0"]);
    let output = command_line.env("AMIGO_INSTANCE_VERSION", "0.5.0").output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("amigo: List of async migrations to be applied:\n- 0001_events_sort_key - Available on amigo versions 0.1.0 - 0.4.0\nAsync migrations are not completed."), "{stderr}");
}

#[tokio::test]
async fn bad_command_line_input_gets_a_clear_error_and_changes_nothing() {
    let config = engine::testing::fresh_databases().await;
    let cases: [(&[&str], &str); 6] = [
        (&["migrations", "start", "0009_nope"], "no migration named \"0009_nope\""),
        (&["migrations", "start", "0001_events_sort_key", "--param", "max_threads=-1"], "0 to 256"),
        (&["migrations", "start", "0001_events_sort_key", "--param", "max_threads=1; DROP TABLE events"], "is not a whole number"),
        (&["migrations", "start", "0001_events_sort_key", "--param", "colour=red"], "has no parameter \"colour\""),
        (&["migrations", "rollback", "0001_events_sort_key"], "cannot roll back 0001_events_sort_key: it is not started"),
        (&["migrations", "errors", "0009_nope"], "no migration named"),
    ];
    for (args, expected) in cases {
        let line = the_one_error_line(&amigo(&config, args));
        assert!(line.contains(expected), "{args:?}: {line}");
    }
    let output = amigo(&config, &["migrations", "list", "--json"]);
    let migrations: Vec<serde_json::Value> = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(migrations.iter().all(|migration| migration["status"] == "not_started" && migration["parameters"] == serde_json::json!({})));
}

#[tokio::test]
async fn hostile_input_to_every_command_gets_one_clear_line_and_changes_nothing() {
    let config = engine::testing::fresh_databases().await;
    let hostile_name = "0001_events_sort_key'; DROP TABLE async_migration; --";
    let long_name = "x".repeat(100_000);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["migrations", "start", hostile_name], "no migration named"),
        (vec!["migrations", "start", &long_name], "no migration named"),
        (vec!["migrations", "stop", hostile_name], "no migration named"),
        (
            vec!["migrations", "stop", "0001_events_sort_key", "--rollback"],
            "cannot stop and roll back 0001_events_sort_key: it is not started",
        ),
        (vec!["migrations", "rollback", hostile_name], "no migration named"),
        (vec!["migrations", "resume", hostile_name], "no migration named"),
        (vec!["migrations", "resume", "0001_events_sort_key"], "cannot resume 0001_events_sort_key: it is not started"),
        (vec!["migrations", "errors", hostile_name, "--json"], "no migration named"),
        (vec!["migrations", "start", "0001_events_sort_key", "--param", "max_threads=1e3"], "is not a whole number"),
        (vec!["migrations", "start", "0001_events_sort_key", "--param", "max_threads=99999999999999999999"], "is not a whole number"),
        (vec!["migrations", "start", "0001_events_sort_key", "--param", "max_threads=4' OR '1'='1"], "is not a whole number"),
        (vec!["migrations", "start", "0001_events_sort_key", "--param", "max_threads"], "is not KEY=VALUE"),
        (vec!["migrations", "start", "0001_events_sort_key", "--param", "=4"], "has no parameter \"\""),
        (vec!["migrations", "start", "0001_events_sort_key", "--param", "max_threads=1", "--param", "max_threads=2"], "given twice"),
        (vec!["check-upgrade", "--to", "'; DROP TABLE async_migration; --"], "is not a version"),
        (vec!["users", "create", "--email", "not-an-email"], "email"),
        (vec!["users", "create", "--email", "admin@example.com'; DROP TABLE users; --"], "email"),
    ];
    for (args, expected) in &cases {
        let mut command = amigo_command(&config, args);
        let output = command.env("AMIGO_USER_PASSWORD", "long enough password").output().unwrap();
        let line = the_one_error_line(&output);
        assert!(line.contains(expected), "{:?}: {line}", &args[..args.len().min(4)]);
        assert!(line.len() < 2_000, "the error line stays one readable line: {} bytes", line.len());
    }
    let short_password =
        amigo_command(&config, &["users", "create", "--email", "admin@example.com"]).env("AMIGO_USER_PASSWORD", "short").output().unwrap();
    assert!(the_one_error_line(&short_password).contains("at least 10 characters"));

    // Values clap itself refuses: exit code 2 and its usage error, no panic.
    for args in [
        &["seed", "--events", "ten"][..],
        &["seed", "--events", "-1"],
        &["migrations", "list", "--jsonn"],
        &["serve", "--listen", "not-an-address"],
    ] {
        let output = amigo(&config, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: ") && !stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // Settings the environment gives are checked before anything connects.
    for (variable, value, expected) in [
        ("AMIGO_LEASE_TIMEOUT_SECONDS", "0", "must be at least 1"),
        ("AMIGO_INSTANCE_VERSION", "'; DROP TABLE", "is not a version"),
        ("AMIGO_METRICS_TOKEN", "short", "at least 16 characters"),
    ] {
        let output = amigo_command(&config, &["serve", "--listen", "127.0.0.1:0"]).env(variable, value).output().unwrap();
        assert!(the_one_error_line(&output).contains(expected), "{variable}={value}");
    }

    let output = amigo(&config, &["migrations", "list", "--json"]);
    let migrations: Vec<serde_json::Value> = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(migrations.iter().all(|migration| migration["status"] == "not_started"), "{migrations:?}");
    let pool = sqlx::PgPool::connect(&config.database_url).await.unwrap();
    let (users, audit): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM audit_log)").fetch_one(&pool).await.unwrap();
    assert_eq!((users, audit), (0, 0), "no account and no action was recorded");
}

/// A folder of migration files of one test's own, deleted when dropped.
struct MigrationsFolder(std::path::PathBuf);

impl MigrationsFolder {
    fn with(label: &str, files: &[(&str, &str)]) -> MigrationsFolder {
        let folder = std::env::temp_dir().join(format!("amigo-cli-{label}-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        for (name, text) in files {
            std::fs::write(folder.join(name), text).unwrap();
        }
        MigrationsFolder(folder)
    }
}

impl Drop for MigrationsFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const GOOD_MIGRATION: &str = r#"description = "Give every order a region"

[[operations]]
description = "add the column region to orders"
clickhouse = "ALTER TABLE {database}.orders ADD COLUMN region String"
rollback = "ALTER TABLE {database}.orders DROP COLUMN region"
"#;

#[test]
fn migrations_check_reads_the_files_without_any_database_and_lists_every_problem() {
    // Nothing listens on port 9: the check must not need either database, and serve must refuse before connecting.
    let nowhere = EngineConfig::new("postgres://amigo@127.0.0.1:9/amigo", "http://127.0.0.1:9", "amigo");
    let check = |folder: &MigrationsFolder| {
        amigo_command(&nowhere, &["migrations", "check"]).env("AMIGO_MIGRATIONS_DIR", &folder.0).output().unwrap()
    };

    let good = MigrationsFolder::with("good", &[("0100_orders_region.toml", GOOD_MIGRATION), ("README.md", "not a migration")]);
    let output = check(&good);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("ok 0001_events_sort_key (") && lines[0].ends_with(" operations)"), "{text}");
    assert_eq!(lines.len(), demo::migrations::all().len() + 1, "{text}");
    assert_eq!(lines.last(), Some(&"ok 0100_orders_region (1 operation)"));

    let broken = MigrationsFolder::with(
        "broken",
        &[
            ("0100_orders_region.toml", GOOD_MIGRATION),
            ("0101_typo.toml", &GOOD_MIGRATION.replace("rollback =", "rollbak =")),
            ("0102_placeholder.toml", &GOOD_MIGRATION.replace("{database}.orders ADD", "{database}.{table} ADD")),
        ],
    );
    let output = check(&broken);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "", "no migration is reported ok when any is broken");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!(
        "amigo: 2 problems in the migrations; nothing was loaded:\n\
         {folder}/0101_typo.toml:6:1: unknown field `rollbak`, expected one of `description`, `clickhouse`, `postgres`, `mutation`, `postgres_batches`, `move_partitions`, `rollback`, `settings`, `timeout_seconds`\n\
         {folder}/0102_placeholder.toml:5:14: clickhouse: {{table}} is neither {{database}} nor a parameter of this migration (it declares no parameters)\n",
        folder = broken.0.display()
    );
    assert_eq!(stderr, expected);

    let serve = amigo_command(&nowhere, &["serve", "--listen", "127.0.0.1:0"]).env("AMIGO_MIGRATIONS_DIR", &broken.0).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&serve.stderr), expected, "serve refuses to start with the same problems");
}

#[test]
fn migrations_new_writes_a_file_that_checks_and_never_replaces_one() {
    let nowhere = EngineConfig::new("postgres://amigo@127.0.0.1:9/amigo", "http://127.0.0.1:9", "amigo");
    let folder = MigrationsFolder::with("new", &[]);
    let amigo = |arguments: &[&str]| {
        amigo_command(&nowhere, arguments).env("AMIGO_MIGRATIONS_DIR", &folder.0).env_remove("AMIGO_DEMO").output().unwrap()
    };
    let written = amigo(&["migrations", "new", "0100_orders_by_shop", "--recipe", "rewrite_table"]);
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    let path = folder.0.join("0100_orders_by_shop.toml");
    assert_eq!(stdout(&written), format!("wrote {}: edit it, then check it with `amigo migrations check`\n", path.display()));
    let check = amigo(&["migrations", "check"]);
    assert_eq!(stdout(&check), "ok 0100_orders_by_shop (5 operations)\n", "{}", String::from_utf8_lossy(&check.stderr));

    std::fs::write(&path, "# edited by hand\n").unwrap();
    let again = amigo(&["migrations", "new", "0100_orders_by_shop", "--recipe", "mutation"]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&again.stderr),
        format!("amigo: {} exists; amigo never replaces a migration file\n", path.display())
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "# edited by hand\n", "nothing is lost");
    let unknown = amigo(&["migrations", "new", "0101_x", "--recipe", "copy"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no recipe \"copy\": the recipes are sql, rewrite_table"));
    assert!(!folder.0.join("0101_x.toml").exists());
}

#[tokio::test]
async fn migrations_check_with_servers_has_them_parse_every_statement_and_runs_none() {
    let config = engine::testing::fresh_databases().await;
    let clickhouse = engine::clickhouse::ClickHouse::connect(&config.clickhouse_url, &config.clickhouse_database).await.unwrap();
    let explains = clickhouse.capabilities().explains_syntax();
    // Tables that do not exist are no problem (an earlier operation may create them); nothing written is run.
    let good = r#"description = "Give every order a note"

[[parameters]]
name = "note"
kind = "text"
description = "The note"
default = "it's new"

[[prechecks]]
postgres = "SELECT to_regclass('shop') IS NOT NULL"
message = "no shop table"

[[operations]]
description = "a ClickHouse probe table"
clickhouse = "CREATE TABLE {database}.parse_probe (note String DEFAULT {note}) ENGINE = Memory"
rollback = "DROP TABLE IF EXISTS {database}.parse_probe"

[[operations]]
description = "a Postgres probe table, then a note for every shop"
postgres = """
    CREATE TABLE parse_probe (note text);
    UPDATE shop SET note = {note} WHERE note IS NULL"""
"#;
    let broken = good
        .replace("ENGINE = Memory\"", "ENGINE = Memory SETTINGS\"")
        .replace("UPDATE shop SET note", "UPDATE shop SETT note")
        .replace("a Postgres probe", "another Postgres probe");
    let folder = MigrationsFolder::with("servers", &[("0100_orders_note.toml", good), ("0101_broken.toml", &broken)]);
    let output = amigo_command(&config, &["migrations", "check", "--servers"])
        .env("AMIGO_MIGRATIONS_DIR", &folder.0)
        .env_remove("AMIGO_DEMO")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "ok 0100_orders_note (2 operations)\nok 0101_broken (2 operations)\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let broken_path = folder.0.join("0101_broken.toml").display().to_string();
    let postgres_refusal = format!("{broken_path}:20:12: Postgres cannot parse it: syntax error at or near \"note\"");
    if explains {
        assert_eq!(lines.len(), 3, "{stderr}");
        assert!(
            lines[0].starts_with(&format!(
                "{broken_path}:15:14: ClickHouse cannot parse it: Syntax error: failed at position 130 (end of query)"
            )),
            "{stderr}"
        );
        assert_eq!(lines[1], postgres_refusal);
        assert_eq!(lines[2], "the servers parsed 3 ClickHouse and 3 Postgres statements of the migration files without running them");
    } else {
        assert_eq!(lines.len(), 3, "{stderr}");
        assert_eq!(lines[0], postgres_refusal);
        assert_eq!(lines[1], "the servers parsed 0 ClickHouse and 3 Postgres statements of the migration files without running them");
        assert!(lines[2].starts_with("not parsed: 4 ClickHouse statements (ClickHouse 18.16"), "{stderr}");
    }

    let probe: u64 = clickhouse.client().query("SELECT count() FROM system.tables WHERE name = 'parse_probe'").fetch_one().await.unwrap();
    let pool = sqlx::PgPool::connect(&config.database_url).await.unwrap();
    let postgres_probe: bool = sqlx::query_scalar("SELECT to_regclass('parse_probe') IS NULL").fetch_one(&pool).await.unwrap();
    assert_eq!((probe, postgres_probe), (0, true), "nothing a file writes was run");

    std::fs::remove_file(folder.0.join("0101_broken.toml")).unwrap();
    let output = amigo_command(&config, &["migrations", "check", "--servers"])
        .env("AMIGO_MIGRATIONS_DIR", &folder.0)
        .env_remove("AMIGO_DEMO")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout(&output).contains("the servers parsed "), "{}", stdout(&output));
}

#[tokio::test]
async fn migrations_plan_shows_the_sql_as_it_will_be_sent_and_changes_nothing() {
    let config = engine::testing::fresh_databases().await;
    let folder = MigrationsFolder::with(
        "plan",
        &[(
            "0100_orders_currency.toml",
            r#"description = "Give every order a currency"

[[parameters]]
name = "currency"
kind = "text"
description = "The currency"
default = "EUR"
max_length = 4

[[operations]]
description = "add the column currency to orders"
clickhouse = "ALTER TABLE {database}.orders ADD COLUMN currency String DEFAULT {currency}"
rollback = "ALTER TABLE {database}.orders DROP COLUMN currency"

[[operations]]
description = "give every shop a currency"
postgres = "ALTER TABLE shop ADD COLUMN currency text NOT NULL DEFAULT {currency}"
rollback = ""
"#,
        )],
    );
    let plan = |arguments: &[&str]| amigo_command(&config, arguments).env("AMIGO_MIGRATIONS_DIR", &folder.0).output().unwrap();
    let output = plan(&["migrations", "plan", "0100_orders_currency", "--param", "currency=US'D"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let database = &config.clickhouse_database;
    let text = stdout(&output);
    let (operations, figures) = text.split_at(text.find("disk: ").expect("the plan ends with its figures"));
    assert!(figures.starts_with("disk: needs 0 B; "), "{figures}");
    assert!(figures.ends_with("\nduration: under a second\n"), "two column changes are brief: {figures}");
    assert_eq!(
        operations,
        format!(
            "0100_orders_currency: Give every order a currency\n\
             parameters: {{\"currency\":\"US'D\"}}\n\
             operation 1/2: add the column currency to orders\n  \
             ClickHouse: ALTER TABLE `{database}`.orders ADD COLUMN currency String DEFAULT 'US\\'D'\n  \
             rollback: ALTER TABLE `{database}`.orders DROP COLUMN currency\n\
             operation 2/2: give every shop a currency\n  \
             Postgres: ALTER TABLE shop ADD COLUMN currency text NOT NULL DEFAULT 'US''D'\n  \
             rollback: nothing to undo\n"
        )
    );
    let seeded = plan(&["seed", "--events", "2000"]);
    assert!(seeded.status.success(), "{}", String::from_utf8_lossy(&seeded.stderr));
    let json: serde_json::Value = serde_json::from_slice(&plan(&["migrations", "plan", "0001_events_sort_key", "--json"]).stdout).unwrap();
    assert_eq!(json["operations"][1]["kind"], "recipe", "{json}");
    let copy = json["operations"][1]["statements"].as_array().expect("the copy's statements");
    assert!(copy.iter().any(|sql| sql.as_str().unwrap().starts_with("INSERT INTO ")), "{json}");
    assert_eq!(json["tables"][0]["table"], "events", "{json}");
    let refused = plan(&["migrations", "plan", "0100_orders_currency", "--param", "currency=EUROS"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("currency"), "{}", String::from_utf8_lossy(&refused.stderr));
    let engine = engine::Engine::connect(&config, vec![]).await.unwrap();
    assert_eq!(engine.audit_log(10).await.unwrap(), [], "a plan changes nothing");
}
