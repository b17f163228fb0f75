//! Demo migrations for the end-to-end specs and the walkthrough's screenshots, loaded only with
//! `AMIGO_DEMO=e2e`. Each is small and deterministic and shows one path of the staff page:
//! progress to 100%, a failure on request and its rollback, a long query to stop, and the upgrade gate.
//!
//! Slow statements sleep 10 ms per row read from a MergeTree table with tiny granules, so they take a
//! known time, use no CPU, and report progress through `system.processes`.

use engine::clickhouse::{quote_identifier, QueryOptions};
use engine::context::MigrationContext;
use engine::definition::{MigrationDefinition, Operation};
use engine::parameters::ParameterSpec;
use engine::{Error, Result};

pub const COPY_NUMBERS: &str = "e2e_0001_copy_numbers";
pub const FAIL_ON_REQUEST: &str = "e2e_0002_fail_on_request";
pub const SLOW_COPY: &str = "e2e_0003_slow_copy";
/// Its version range ends before amigo 0.1, so on this version it can only block the upgrade.
pub const LEGACY_CLEANUP: &str = "e2e_0000_legacy_cleanup";

/// The demo set, in name order.
pub fn all() -> Vec<MigrationDefinition> {
    vec![legacy_cleanup(), copy_numbers(), fail_on_request(), slow_copy()]
}

fn legacy_cleanup() -> MigrationDefinition {
    MigrationDefinition::new(LEGACY_CLEANUP, "Drop the scratch tables amigo 0.0.x left behind (demo: it blocks the upgrade)")
        .versions("0.0.1", "0.0.9")
        .operation(Operation::clickhouse("drop the 0.0.x scratch table", "DROP TABLE IF EXISTS {database}.e2e_legacy_scratch", ""))
}

fn copy_numbers() -> MigrationDefinition {
    MigrationDefinition::new(COPY_NUMBERS, "Copy a table of numbers into a new one, 10 ms per row (demo: progress to 100%)")
        .parameter(ParameterSpec::integer("rows", "How many numbers to copy; each takes 10 ms", 400, 1, 100_000))
        .operation(Operation::rust(
            "create the source and target tables",
            |context| async move { create_tables(&context, "e2e_copy").await },
            |context| async move { drop_tables(&context, "e2e_copy").await },
        ))
        .operation(Operation::clickhouse(
            "fill the source with numbers",
            "INSERT INTO {database}.e2e_copy_source SELECT number FROM numbers({rows})",
            "",
        ))
        .operation(slow_copy_operation("copy every number, 10 ms per row", "e2e_copy"))
        .operation(Operation::clickhouse("drop the source table", "DROP TABLE {database}.e2e_copy_source", ""))
}

fn fail_on_request() -> MigrationDefinition {
    MigrationDefinition::new(
        FAIL_ON_REQUEST,
        "Build a scratch table in three steps, one of which can fail on purpose (demo: errors and rollback)",
    )
    .parameter(ParameterSpec::integer(
        "fail_at_operation",
        "The operation (0 to 2) that fails on purpose, to rehearse an error and its rollback; -1 fails none",
        -1,
        -1,
        2,
    ))
    .operation(Operation::rust(
        "create the scratch table",
        |context| async move {
            fail_if_asked(&context, 0)?;
            create_tables(&context, "e2e_scratch").await
        },
        |context| async move { drop_tables(&context, "e2e_scratch").await },
    ))
    .operation(Operation::rust(
        "fill it with 200 numbers",
        |context| async move {
            fail_if_asked(&context, 1)?;
            let database = quote_identifier(context.clickhouse.database());
            let sql = format!("INSERT INTO {database}.e2e_scratch_source SELECT number FROM numbers(200)");
            context.clickhouse_execute(&sql, &QueryOptions::default()).await
        },
        |_| async { Ok(()) },
    ))
    .operation(Operation::rust(
        "check the scratch table",
        |context| async move {
            fail_if_asked(&context, 2)?;
            let database = quote_identifier(context.clickhouse.database());
            let sql = format!("SELECT count() FROM {database}.e2e_scratch_source");
            context.clickhouse_execute(&sql, &QueryOptions::default()).await
        },
        |_| async { Ok(()) },
    ))
}

fn slow_copy() -> MigrationDefinition {
    MigrationDefinition::new(SLOW_COPY, "Copy numbers very slowly, 10 ms per row (demo: a long query to stop)")
        .parameter(ParameterSpec::integer("seconds", "How long the copy runs", 600, 1, 3600))
        .operation(Operation::rust(
            "create the tables and fill the source",
            |context| async move {
                create_tables(&context, "e2e_slow").await?;
                let database = quote_identifier(context.clickhouse.database());
                let rows = context.parameters.integer("seconds") * 100;
                let sql = format!("INSERT INTO {database}.e2e_slow_source SELECT number FROM numbers({rows})");
                context.clickhouse_execute(&sql, &QueryOptions::default()).await
            },
            |context| async move { drop_tables(&context, "e2e_slow").await },
        ))
        .operation(slow_copy_operation("copy every number, 10 ms per row", "e2e_slow"))
}

/// `INSERT INTO {prefix}_target SELECT ... FROM {prefix}_source`, sleeping 10 ms per row on one thread.
fn slow_copy_operation(description: &str, prefix: &str) -> Operation {
    Operation::clickhouse(
        description,
        &format!(
            "INSERT INTO {{database}}.{prefix}_target SELECT n FROM {{database}}.{prefix}_source WHERE NOT ignore(sleepEachRow(0.01))"
        ),
        "",
    )
    .with_setting("max_block_size", "8")
    .with_setting("max_threads", "1")
}

/// A source table with 8-row granules (so progress moves smoothly) and an empty target.
async fn create_tables(context: &MigrationContext, prefix: &str) -> Result<()> {
    let database = quote_identifier(context.clickhouse.database());
    for table in ["source", "target"] {
        let sql =
            format!("CREATE TABLE {database}.{prefix}_{table} (n UInt64) ENGINE = MergeTree ORDER BY n SETTINGS index_granularity = 8");
        context.clickhouse_execute(&sql, &QueryOptions::default()).await?;
    }
    Ok(())
}

async fn drop_tables(context: &MigrationContext, prefix: &str) -> Result<()> {
    let database = quote_identifier(context.clickhouse.database());
    for table in ["source", "target"] {
        context.clickhouse_execute(&format!("DROP TABLE IF EXISTS {database}.{prefix}_{table}"), &QueryOptions::default()).await?;
    }
    Ok(())
}

fn fail_if_asked(context: &MigrationContext, operation: i64) -> Result<()> {
    if context.parameters.integer("fail_at_operation") == operation {
        return Err(Error::Migration(format!("injected failure: fail_at_operation is {operation}")));
    }
    Ok(())
}
