//! Migrations written as files (`AMIGO_MIGRATIONS_DIR`) on real Postgres and ClickHouse, for tables that are not
//! the demo's (`orders` in ClickHouse, `shop` in Postgres): a file using every part of the format runs to
//! completion through the runner and changes both databases; a failure rolls it back in reverse order; a
//! failing precheck fails the run at startup and a failing health check stops it, each with its message; an
//! instance that has the result does not need it; files using the recipes (`[rewrite_table]`, `mutation`,
//! `move_partitions`, `postgres_batches`) run to completion with their effect; and each kind of broken file is
//! refused at connect with its line, nothing recorded.

use std::path::PathBuf;
use std::time::Duration;

use engine::definition::MigrationDefinition;
use engine::loader::Problem;
use engine::status::Status;
use engine::testing::{is_settled, spawn_runner, wait_for};
use engine::{Engine, EngineConfig, Error, MigrationOverview};
use serde_json::json;

const TESTER: &str = "tester@example.com";
const NAME: &str = "0100_orders_region";

/// Every part of the format: versions, requirements, three kinds of parameters, is_required, a precheck and a
/// health check in each database, and operations in both, with settings and a timeout. The rollbacks of
/// operations 1 and 3 (and of 0 and 2) only succeed in reverse order: a foreign key in Postgres, a column
/// default in ClickHouse.
const ORDERS_REGION: &str = r#"
description = "Give every order (ClickHouse) and shop (Postgres) a region"
versions = { min = "0.1.0", max = "0.9.0" }
requires = { clickhouse = "18.16", postgres = "13" }
is_required = { clickhouse = "SELECT count() = 0 FROM system.columns WHERE database = currentDatabase() AND table = 'orders' AND name = 'region'" }

[[parameters]]
name = "default_region"
kind = "text"
description = "The region of the orders and shops there are"
default = "eu"
max_length = 20

[[parameters]]
name = "max_parts"
kind = "integer"
description = "Active parts above which the health check stops the run"
default = 1000
min = 1
max = 100000

[[parameters]]
name = "fail_at_end"
kind = "boolean"
description = "Fail the last operation on purpose, to rehearse the rollback"
default = false

[[prechecks]]
clickhouse = "SELECT count() > 0 FROM system.tables WHERE database = currentDatabase() AND name = 'orders'"
message = "the ClickHouse table orders does not exist"

[[prechecks]]
postgres = "SELECT to_regclass('shop') IS NOT NULL"
message = "the Postgres table shop does not exist"

[[health_checks]]
postgres = "SELECT NOT pg_is_in_recovery()"
message = "Postgres is in recovery"

[[health_checks]]
clickhouse = """
SELECT count() < {max_parts}
FROM system.parts
WHERE database = currentDatabase() AND active -- every table of the product
"""
message = "too many active parts; let merges catch up, then resume"

[[operations]]
description = "add the column region to orders"
clickhouse = "ALTER TABLE {database}.orders ADD COLUMN region String DEFAULT {default_region}"
rollback = "ALTER TABLE {database}.orders DROP COLUMN region"

[[operations]]
description = "create the table of region names"
postgres = """
CREATE TABLE region_name (name text PRIMARY KEY);
INSERT INTO region_name VALUES ({default_region})
"""
rollback = "DROP TABLE region_name"

[[operations]]
description = "add the column region_label to orders, computed from region"
clickhouse = "ALTER TABLE {database}.orders ADD COLUMN region_label String DEFAULT concat('region ', region)"
rollback = "ALTER TABLE {database}.orders DROP COLUMN region_label"

[[operations]]
description = "add the column region to shop, naming a region"
postgres = "ALTER TABLE shop ADD COLUMN region text NOT NULL DEFAULT {default_region} REFERENCES region_name (name)"
rollback = "ALTER TABLE shop DROP COLUMN region"

[[operations]]
description = "create orders_by_region"
clickhouse = "CREATE TABLE {database}.orders_by_region (region String, id UInt64) ENGINE = MergeTree ORDER BY (region, id)"
rollback = "DROP TABLE {database}.orders_by_region"

[[operations]]
description = "copy every order into orders_by_region, 10 ms per order"
clickhouse = "INSERT INTO {database}.orders_by_region SELECT region, id FROM {database}.orders WHERE NOT ignore(sleepEachRow(0.01))"
settings = { max_block_size = "8", max_threads = 1 }
timeout_seconds = 60

[[operations]]
description = "fail on purpose when fail_at_end is true"
clickhouse = "SELECT throwIf({fail_at_end})"
"#;

/// Orders the copy takes 2 s over (10 ms each), so that the health check is asked during it.
const ORDERS: u64 = 200;

/// A folder of migration files of one test's own, deleted when dropped.
struct Folder(PathBuf);

impl Folder {
    fn with(files: &[(&str, &str)]) -> Folder {
        let folder = std::env::temp_dir().join(format!("amigo-migrations-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&folder).unwrap();
        for (name, text) in files {
            std::fs::write(folder.join(name), text).unwrap();
        }
        Folder(folder)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn config_with(folder: &Folder) -> EngineConfig {
    EngineConfig { migrations_dir: Some(folder.0.clone()), ..engine::testing::fresh_databases().await }
}

/// An engine with 0100_orders_region loaded from its file, on a product with `orders` in ClickHouse and, when
/// `with_shops`, `shop` in Postgres; health checks every second.
async fn product(folder: &Folder, with_shops: bool) -> Engine {
    let engine = Engine::connect(&config_with(folder).await, vec![]).await.expect("connect");
    let client = engine.clickhouse().client();
    client.query("CREATE TABLE orders (id UInt64, amount UInt32) ENGINE = MergeTree ORDER BY id").execute().await.unwrap();
    client.query(&format!("INSERT INTO orders SELECT number, number * 10 FROM numbers({ORDERS})")).execute().await.unwrap();
    if with_shops {
        let pool = engine.store().pool();
        sqlx::query("CREATE TABLE shop (id int PRIMARY KEY, name text NOT NULL)").execute(pool).await.unwrap();
        sqlx::query("INSERT INTO shop VALUES (1, 'Lisbon'), (2, 'Porto'), (3, 'Faro')").execute(pool).await.unwrap();
    }
    engine.update_setting("health_check_interval_seconds", &json!(1), TESTER).await.unwrap();
    engine
}

async fn start(engine: &Engine, parameters: serde_json::Value) {
    engine.start(NAME, TESTER, parameters.as_object().unwrap()).await.expect("start");
}

async fn settled(engine: &Engine) -> MigrationOverview {
    wait_for(engine, NAME, Duration::from_secs(60), "settled", is_settled).await
}

async fn error_messages(engine: &Engine) -> Vec<String> {
    engine.errors(NAME).await.unwrap().into_iter().map(|error| error.message).collect()
}

/// The names of a ClickHouse table's columns, in name order (18.16's system.columns has no position).
async fn clickhouse_columns(engine: &Engine, table: &str) -> Vec<String> {
    let query = "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = ? ORDER BY name";
    engine.clickhouse().client().query(query).bind(table).fetch_all().await.unwrap()
}

async fn clickhouse_tables(engine: &Engine) -> Vec<String> {
    engine::testing::table_names(engine).await
}

async fn postgres_columns(engine: &Engine, table: &str) -> Vec<String> {
    let query = "SELECT column_name::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position";
    sqlx::query_scalar(query).bind(table).fetch_all(engine.store().pool()).await.unwrap()
}

async fn postgres_table_exists(engine: &Engine, table: &str) -> bool {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(table).fetch_one(engine.store().pool()).await.unwrap()
}

#[tokio::test]
async fn a_migration_file_runs_to_completion_and_changes_both_databases() {
    let folder = Folder::with(&[("0100_orders_region.toml", ORDERS_REGION)]);
    let engine = product(&folder, true).await;
    let definition = engine.definition(NAME).expect("loaded from its file");
    assert_eq!((definition.operations.len(), definition.parameters.len()), (7, 3));
    let registration = definition.registration();
    assert_eq!((registration.min_version.as_str(), registration.max_version.as_str()), ("0.1.0", "0.9.0"));
    let _runner = spawn_runner(&engine);
    start(&engine, json!({ "default_region": "us-east" })).await;
    // The copy takes 2 s: the health checks, asked every second, pass meanwhile.
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", error_messages(&engine).await);
    assert_eq!(done.record.progress, 100);

    let client = engine.clickhouse().client();
    let regions: Vec<(String, String, u64)> =
        client.query("SELECT region, region_label, count() AS orders FROM orders GROUP BY region, region_label").fetch_all().await.unwrap();
    assert_eq!(regions, [("us-east".to_string(), "region us-east".to_string(), ORDERS)]);
    let copied: Vec<(String, u64)> =
        client.query("SELECT region, count() FROM orders_by_region GROUP BY region").fetch_all().await.unwrap();
    assert_eq!(copied, [("us-east".to_string(), ORDERS)]);
    let pool = engine.store().pool();
    let shops: Vec<(String, String)> = sqlx::query_as("SELECT name, region FROM shop ORDER BY id").fetch_all(pool).await.unwrap();
    assert_eq!(shops, [("Lisbon".into(), "us-east".into()), ("Porto".into(), "us-east".into()), ("Faro".into(), "us-east".into())]);
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM region_name").fetch_all(pool).await.unwrap();
    assert_eq!(names, ["us-east"]);
}

#[tokio::test]
async fn a_failure_rolls_the_operations_back_in_reverse_order() {
    let folder = Folder::with(&[("0100_orders_region.toml", ORDERS_REGION)]);
    let engine = product(&folder, true).await;
    let _runner = spawn_runner(&engine);
    start(&engine, json!({ "fail_at_end": true })).await;
    let done = settled(&engine).await;
    // Rolled back, not errored: each rollback ran after the one that had to come before it (region_label's
    // before region's, shop.region's foreign key before region_name's table).
    assert_eq!(done.record.status, Status::RolledBack, "{:?}", error_messages(&engine).await);
    let errors = error_messages(&engine).await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("operation 6 failed: ClickHouse error: ") && errors[0].contains("throwIf"), "{errors:?}");

    assert_eq!(clickhouse_columns(&engine, "orders").await, ["amount", "id"]);
    assert_eq!(clickhouse_tables(&engine).await, ["orders"]);
    assert_eq!(postgres_columns(&engine, "shop").await, ["id", "name"]);
    assert!(!postgres_table_exists(&engine, "region_name").await);
}

#[tokio::test]
async fn a_failing_precheck_fails_the_run_at_startup_with_its_message() {
    let folder = Folder::with(&[("0100_orders_region.toml", ORDERS_REGION)]);
    let engine = product(&folder, false).await;
    let _runner = spawn_runner(&engine);
    start(&engine, json!({})).await;
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::FailedAtStartup);
    // The first precheck passed; the second is the first to fail.
    assert_eq!(error_messages(&engine).await, ["precheck failed: the Postgres table shop does not exist"]);
    assert_eq!(clickhouse_columns(&engine, "orders").await, ["amount", "id"], "no operation ran");
}

#[tokio::test]
async fn a_failing_health_check_stops_the_run_with_its_message() {
    let folder = Folder::with(&[("0100_orders_region.toml", ORDERS_REGION)]);
    let engine = product(&folder, true).await;
    let _runner = spawn_runner(&engine);
    // orders has one active part: more than max_parts allows, so the first health check (after a second) fails.
    start(&engine, json!({ "max_parts": 1 })).await;
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::RolledBack, "{:?}", error_messages(&engine).await);
    let errors = error_messages(&engine).await;
    assert_eq!(errors, ["health check failed during operation 5: too many active parts; let merges catch up, then resume"]);
    assert_eq!(clickhouse_columns(&engine, "orders").await, ["amount", "id"]);
}

#[tokio::test]
async fn an_instance_that_has_the_result_does_not_need_it() {
    let folder = Folder::with(&[("0100_orders_region.toml", ORDERS_REGION)]);
    let engine = product(&folder, true).await;
    engine.clickhouse().client().query("ALTER TABLE orders ADD COLUMN region String").execute().await.unwrap();
    engine.complete_not_required().await.unwrap();
    let overview = engine.migration(NAME).await.unwrap();
    assert_eq!(overview.record.status, Status::Completed);
    assert!(overview.record.started_at.is_none(), "it never ran: {:?}", overview.record);
}

/// A `[rewrite_table]` of `orders` to a new sort key, with a precheck asked after the recipe's and one operation
/// of the file's own after the recipe's.
const ORDERS_BY_SHOP: &str = r#"
description = "Sort orders by shop"

[rewrite_table]
table = "orders"
new_table = "orders_by_shop_new"
backup_table = "orders_by_shop_backup"
order_by = "shop_id, order_id"
row_identity = "order_id"
row_checksum = "cityHash64(shop_id, order_id, day, total)"

[[prechecks]]
postgres = "SELECT to_regclass('orders_sorted') IS NULL"
message = "orders_sorted exists already"

[[operations]]
description = "record that orders are sorted by shop"
postgres = "CREATE TABLE orders_sorted (at timestamptz NOT NULL DEFAULT now())"
rollback = "DROP TABLE orders_sorted"
"#;

/// Rows of the monthly-partitioned `orders` of the recipe tests: 3000 orders of 7 shops over 90 days of 2024.
const MONTHLY_ORDERS: u64 = 3000;

/// An engine with `folder`'s files on a product whose ClickHouse `orders` (shop_id, order_id, day, total) is
/// partitioned by month, health checks every second. No runner yet: one that starts before the tables exist
/// finds a recipe's table missing and its migration not required.
async fn monthly_orders(folder: &Folder, also: &[&str]) -> Engine {
    let engine = Engine::connect(&config_with(folder).await, vec![]).await.expect("connect");
    let client = engine.clickhouse().client();
    for table in std::iter::once(&"orders").chain(also) {
        let create = format!(
            "CREATE TABLE {table} (shop_id UInt32, order_id UInt64, day Date, total Float64) \
             ENGINE = MergeTree PARTITION BY toYYYYMM(day) ORDER BY order_id"
        );
        client.query(&create).execute().await.unwrap();
    }
    let insert = format!(
        "INSERT INTO orders SELECT toUInt32(number % 7), number, toDate('2024-01-01') + number % 90, number / 4 \
         FROM numbers({MONTHLY_ORDERS})"
    );
    client.query(&insert).execute().await.unwrap();
    engine.update_setting("health_check_interval_seconds", &json!(1), TESTER).await.unwrap();
    engine
}

async fn completed(engine: &Engine, name: &str) {
    engine.start(name, TESTER, &serde_json::Map::new()).await.expect("start");
    let done = wait_for(engine, name, Duration::from_secs(120), "settled", is_settled).await;
    let errors: Vec<String> = engine.errors(name).await.unwrap().into_iter().map(|error| error.message).collect();
    assert_eq!(done.record.status, Status::Completed, "{errors:?}");
}

/// Rows and the sum of their totals, of a ClickHouse table; exact, as every total is a multiple of a quarter.
async fn rows_and_total(engine: &Engine, table: &str) -> (u64, f64) {
    let query = format!("SELECT count(), sum(total) FROM {table}");
    engine.clickhouse().client().query(&query).fetch_one().await.unwrap()
}

#[tokio::test]
async fn a_rewrite_table_file_gives_the_table_its_new_sort_key_with_every_row() {
    let folder = Folder::with(&[("0110_orders_by_shop.toml", ORDERS_BY_SHOP)]);
    let engine = monthly_orders(&folder, &[]).await;
    let definition = engine.definition("0110_orders_by_shop").expect("loaded from its file");
    // The recipe's five operations, then the file's own.
    assert_eq!(definition.operations.len(), 6);
    assert_eq!(definition.operations[5].description, "record that orders are sorted by shop");
    let before = rows_and_total(&engine, "orders").await;
    let _runner = spawn_runner(&engine);
    completed(&engine, "0110_orders_by_shop").await;

    let query = "SELECT sorting_key FROM system.tables WHERE database = currentDatabase() AND name = 'orders'";
    let sorting_key: String = engine.clickhouse().client().query(query).fetch_one().await.unwrap();
    assert_eq!(sorting_key.replace(['(', ')', '`', ' '], ""), "shop_id,order_id");
    assert_eq!(before.0, MONTHLY_ORDERS);
    assert_eq!(rows_and_total(&engine, "orders").await, before);
    assert_eq!(rows_and_total(&engine, "orders_by_shop_backup").await, before, "the original is kept");
    assert!(postgres_table_exists(&engine, "orders_sorted").await, "the file's own operation ran after the recipe's");
}

#[tokio::test]
async fn mutation_and_move_partitions_operations_run_to_completion_with_their_parameters_rendered() {
    let mutation = r#"
description = "Round every total"

[[parameters]]
name = "from_shop"
kind = "integer"
description = "The first shop whose totals are rounded"
default = 0
min = 0
max = 1000

[[operations]]
description = "round the totals"
mutation = { table = "orders", command = "UPDATE total = round(total) WHERE total != round(total) AND shop_id >= {from_shop}", marker = "round(total)", settings = { max_threads = 1 } }
"#;
    let move_partitions = r#"
description = "Archive the orders of January"
depends_on = ["0120_round_totals"]

[[parameters]]
name = "before_month"
kind = "text"
description = "The months before this one (YYYYMM) move"
default = "202402"
max_length = 6

[[operations]]
description = "move January to orders_archive"
move_partitions = { from = "orders", to = "orders_archive", partitions_where = "partition_id < {before_month}", row_identity = "order_id" }
"#;
    let folder = Folder::with(&[("0120_round_totals.toml", mutation), ("0121_archive_january.toml", move_partitions)]);
    let engine = monthly_orders(&folder, &["orders_archive"]).await;
    let _runner = spawn_runner(&engine);
    completed(&engine, "0120_round_totals").await;
    let client = engine.clickhouse().client();
    let unrounded: u64 = client.query("SELECT count() FROM orders WHERE total != round(total)").fetch_one().await.unwrap();
    assert_eq!(unrounded, 0);
    let before = rows_and_total(&engine, "orders").await;

    completed(&engine, "0121_archive_january").await;
    let january: u64 = client.query("SELECT count() FROM orders WHERE day < '2024-02-01'").fetch_one().await.unwrap();
    assert_eq!(january, 0, "January left orders");
    let archived: Vec<(u32, u64)> =
        client.query("SELECT toYYYYMM(day) AS month, count() FROM orders_archive GROUP BY month").fetch_all().await.unwrap();
    // Days 0 to 30 of every 90: 31 of each 90 orders.
    assert_eq!(archived, [(202401, MONTHLY_ORDERS / 90 * 31 + (MONTHLY_ORDERS % 90).min(31))]);
    let (left, archive) = (rows_and_total(&engine, "orders").await, rows_and_total(&engine, "orders_archive").await);
    assert_eq!((left.0 + archive.0, left.1 + archive.1), before, "every order is in one of the tables");
}

#[tokio::test]
async fn a_postgres_batches_operation_fills_a_postgres_table() {
    let file = r#"
description = "Give every shop a slug"

[[parameters]]
name = "batch_size"
kind = "integer"
description = "Shops per batch"
default = 2
min = 1
max = 1000

[[parameters]]
name = "suffix"
kind = "text"
description = "What every slug ends with"
default = "-shop"

[[operations]]
description = "fill shop.slug"
postgres_batches = { table = "shop", key = "id", set = "slug = lower(shop.name) || {suffix}", pending = "shop.slug IS NULL", batch_size_parameter = "batch_size" }
"#;
    let folder = Folder::with(&[("0130_shop_slug.toml", file)]);
    let engine = Engine::connect(&config_with(&folder).await, vec![]).await.expect("connect");
    let pool = engine.store().pool();
    sqlx::query("CREATE TABLE shop (id bigint PRIMARY KEY, name text NOT NULL, slug text)").execute(pool).await.unwrap();
    sqlx::query("INSERT INTO shop (id, name) SELECT n, 'Shop ' || n FROM generate_series(1, 25) AS n").execute(pool).await.unwrap();
    let _runner = spawn_runner(&engine);
    completed(&engine, "0130_shop_slug").await;
    let slugs: Vec<(String, Option<String>)> = sqlx::query_as("SELECT name, slug FROM shop ORDER BY id").fetch_all(pool).await.unwrap();
    assert_eq!(slugs.len(), 25);
    assert!(slugs.iter().all(|(name, slug)| slug.as_deref() == Some(format!("{}-shop", name.to_lowercase()).as_str())), "{slugs:?}");
}

/// What connecting with `files` (next to the migration compiled in, [`compiled_in`]) is refused with, as `file:line: message`
/// lines, after checking that nothing was recorded in Postgres.
async fn refusal(files: &[(&str, &str)]) -> Vec<String> {
    let folder = Folder::with(files);
    let config = config_with(&folder).await;
    let problems = match Engine::connect(&config, vec![compiled_in()]).await {
        Err(Error::InvalidMigrations(problems)) => problems,
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("connected with {files:?}"),
    };
    let files_only = EngineConfig { migrations_dir: None, ..config };
    let engine = Engine::connect(&files_only, vec![]).await.expect("connect without the files");
    assert_eq!(engine.list().await.unwrap(), [], "nothing was recorded");
    problems.iter().map(|problem| located(problem, &folder)).collect()
}

/// The one migration the refused sets join, as if the product's binary had it compiled in (written in Rust).
fn compiled_in() -> MigrationDefinition {
    MigrationDefinition::new("0004_team_slug", "a migration the product wrote in Rust")
}

/// `file:line: message`, the file named relative to the test's folder.
fn located(problem: &Problem, folder: &Folder) -> String {
    let path = problem.path.as_deref().map(|path| path.strip_prefix(&folder.0).unwrap_or(path).display().to_string());
    match (path, problem.line) {
        (Some(path), Some(line)) => format!("{path}:{line}: {}", problem.message),
        (Some(path), None) => format!("{path}: {}", problem.message),
        (None, _) => problem.message.clone(),
    }
}

/// A valid migration file with `extra` at its top, an operation made of `operation`, and nothing else.
fn file_with(extra: &str, operation: &str) -> String {
    format!("description = \"a test migration\"\n{extra}\n[[operations]]\ndescription = \"one step\"\n{operation}\n")
}

#[tokio::test]
async fn each_kind_of_broken_file_is_refused_with_its_line_and_nothing_is_recorded() {
    let clickhouse = "clickhouse = \"SELECT 1\"";
    let cases: Vec<(&str, String, &str)> = vec![
        ("0201_syntax", file_with("versions = { min = \"0.1.0\" max = \"0.9.0\" }", clickhouse), "0201_syntax.toml:2: missing comma"),
        ("0202_unknown_field", file_with("", "clickhouse = \"SELECT 1\"\nrollbak = \"\""), "0202_unknown_field.toml:6: unknown field `rollbak`"),
        ("0203_wrong_type", file_with("depends_on = \"0004_team_slug\"", clickhouse), "0203_wrong_type.toml:2: invalid type: string"),
        (
            "0204_both",
            file_with("", "clickhouse = \"SELECT 1\"\npostgres = \"SELECT 1\""),
            "0204_both.toml:3: an operation has both clickhouse and postgres: give exactly one",
        ),
        (
            "0205_neither",
            file_with("", ""),
            "0205_neither.toml:3: an operation needs clickhouse, postgres, mutation, postgres_batches or move_partitions: give exactly one",
        ),
        (
            "0206_placeholder",
            file_with("", "clickhouse = \"\"\"\nALTER TABLE {database}.orders\nDROP COLUMN {column}\"\"\""),
            "0206_placeholder.toml:5: clickhouse: {column} is neither {database} nor a parameter of this migration (it declares no parameters)",
        ),
        (
            "0207_database_in_postgres",
            file_with("", "postgres = \"UPDATE shop SET x = 1\"\nrollback = \"DROP TABLE {database}.shop\""),
            "0207_database_in_postgres.toml:6: rollback: {database} is the ClickHouse database; Postgres SQL has no such placeholder",
        ),
        (
            "0208_default_out_of_range",
            file_with(
                "\n[[parameters]]\nname = \"threads\"\nkind = \"integer\"\ndescription = \"d\"\ndefault = 100\nmin = 0\nmax = 64\n",
                clickhouse,
            ),
            "0208_default_out_of_range.toml:7: parameter threads: the default is invalid: 100 is out of range: it must be from 0 to 64",
        ),
        (
            "0209_name_not_the_files",
            file_with("name = \"0209_other\"", clickhouse),
            "0209_name_not_the_files.toml:2: name is \"0209_other\", but the file is 0209_name_not_the_files.toml",
        ),
        (
            "0210_unknown_dependency",
            file_with("depends_on = [\"0004_team_slug\", \"0099_nowhere\"]", clickhouse),
            "0210_unknown_dependency.toml:2: 0210_unknown_dependency depends on \"0099_nowhere\", which is no migration amigo knows",
        ),
        ("0211_version", file_with("versions = { min = \"banana\" }", clickhouse), "0211_version.toml:2: versions.min \"banana\" is not a version"),
        (
            "0212_min_above_max",
            file_with("versions = { min = \"0.9.0\", max = \"0.1.0\" }", clickhouse),
            "0212_min_above_max.toml:2: versions: min 0.9.0 is greater than max 0.1.0",
        ),
        (
            "0213_key_after_a_table",
            format!("{}is_required = {{ clickhouse = \"SELECT 1\" }}\n", file_with("", clickhouse)),
            "0213_key_after_a_table.toml:6: unknown field `is_required`",
        ),
        (
            "0214_recipe_unknown_field",
            file_with("", "mutation = { table = \"orders\", command = \"DELETE WHERE 1\", marker = \"1\", tabel = \"x\" }"),
            "0214_recipe_unknown_field.toml:5: unknown field `tabel`",
        ),
        (
            "0215_recipe_missing_field",
            file_with("", "\nmove_partitions = { from = \"orders\", to = \"orders_archive\", row_identity = \"id\" }"),
            "0215_recipe_missing_field.toml:6: missing field `partitions_where`",
        ),
        (
            "0216_recipe_placeholder",
            file_with("", "mutation = { table = \"{orders}\", command = \"DELETE WHERE 1\", marker = \"1\" }"),
            "0216_recipe_placeholder.toml:5: mutation.table: this field takes no placeholders, so {orders} would be sent as it is",
        ),
        (
            "0217_batch_size_not_declared",
            file_with(
                "",
                "postgres_batches = { table = \"shop\", key = \"id\", set = \"slug = name\", pending = \"slug IS NULL\", batch_size_parameter = \"batch_size\" }",
            ),
            "0217_batch_size_not_declared.toml:5: postgres_batches.batch_size_parameter: \"batch_size\" is not an integer parameter of this migration (it declares none)",
        ),
        (
            "0218_rollback_next_to_a_recipe",
            file_with("", "mutation = { table = \"orders\", command = \"DELETE WHERE 1\", marker = \"1\" }\nrollback = \"SELECT 1\""),
            "0218_rollback_next_to_a_recipe.toml:6: rollback next to a recipe: the recipe has its own rollback",
        ),
        (
            "0219_rewrite_table_and_is_required",
            "description = \"d\"\nis_required = { clickhouse = \"SELECT 1\" }\n[rewrite_table]\ntable = \"orders\"\nnew_table = \"n\"\nbackup_table = \"b\"\nrow_identity = \"id\"\n".into(),
            "0219_rewrite_table_and_is_required.toml:2: is_required next to [rewrite_table]: the recipe decides it",
        ),
    ];
    for (name, text, expected) in &cases {
        let file = format!("{name}.toml");
        let problems = refusal(&[(&file, text)]).await;
        assert_eq!(problems.len(), 1, "{name}: {problems:#?}");
        assert!(problems[0].starts_with(expected), "{name}: expected {expected:?}, got {:?}", problems[0]);
    }
    // A name compiled into the binary is taken, whether the file writes it (its line) or only is named so.
    let taken = "the name 0004_team_slug is taken: a migration compiled into this binary has it; give this one another name";
    let named = refusal(&[("0004_team_slug.toml", &file_with("name = \"0004_team_slug\"", clickhouse))]).await;
    assert_eq!(named, [format!("0004_team_slug.toml:2: {taken}")]);
    let file_named = refusal(&[("0004_team_slug.toml", &file_with("", clickhouse))]).await;
    assert_eq!(file_named, [format!("0004_team_slug.toml: {taken}")]);
}

#[tokio::test]
async fn every_problem_of_every_file_is_reported_at_once() {
    let clickhouse = "clickhouse = \"SELECT 1\"";
    let problems = refusal(&[
        ("0301_good.toml", &file_with("depends_on = [\"0302_cycle\"]", clickhouse)),
        ("0302_cycle.toml", &file_with("depends_on = [\"0301_good\"]", clickhouse)),
        ("0303_syntax.toml", "description = \n"),
        ("0304_depends_on_the_broken_one.toml", &file_with("depends_on = [\"0303_syntax\"]", "postgres = \"SELECT {nope}\"")),
        ("notes.md", "not a migration: ignored"),
    ])
    .await;
    assert_eq!(
        problems,
        [
            "0301_good.toml:2: dependency cycle: 0301_good -> 0302_cycle -> 0301_good; no migration of it could ever start",
            "0303_syntax.toml:1: string values must be quoted, expected literal string",
            "0304_depends_on_the_broken_one.toml:5: postgres: {nope} is not a parameter of this migration (it declares no parameters)",
        ]
    );
}

#[tokio::test]
async fn a_missing_folder_is_refused_naming_it() {
    let config =
        EngineConfig { migrations_dir: Some(PathBuf::from("/nonexistent/amigo-migrations")), ..engine::testing::fresh_databases().await };
    let error = Engine::connect(&config, vec![]).await.err().expect("refused");
    let text = error.to_string();
    assert!(text.starts_with("1 problem in the migrations; nothing was loaded:\n/nonexistent/amigo-migrations: cannot read"), "{text}");
}
