//! 0004_team_slug: gives every team (in Postgres, where the product keeps its teams) a URL slug made from its
//! name and id, filled in batches so that no statement holds locks on many rows for long.
//!
//! 0. `ALTER TABLE team ADD COLUMN IF NOT EXISTS slug text` (nullable: instant, no rewrite);
//! 1. fill it `batch_size` teams at a time in id order (the Postgres batches recipe), each batch one short
//!    transaction; the checkpoint is the last id done, progress the teams done out of those there were when
//!    the operation started;
//! 2. in one transaction: lock the table against writes, fill the teams created since (their ids may be
//!    anywhere), and `SET NOT NULL`.
//!
//! Resume continues after the checkpoint's id. A batch that committed just before a crash, ahead of its
//! checkpoint, is done again: a batch only fills slugs that are still empty, and a slug depends on nothing
//! but the row, so doing it twice changes nothing. Stop interrupts between or during batches (a batch in
//! flight rolls back); the slugs already filled stay, and a resume continues. Rollback drops the column,
//! which also undoes operations 1 and 2.
//!
//! The product must write a slug for the teams it creates from the moment operation 2 has run.

use crate::TEAM_TABLE;
use engine::context::MigrationContext;
use engine::definition::{nothing_to_undo, CheckOutcome, MigrationDefinition, Operation};
use engine::parameters::ParameterSpec;
use engine::recipes::postgres_batches::PostgresBatches;
use engine::Result;

pub const NAME: &str = "0004_team_slug";
/// A team's slug: its name in lowercase ASCII words joined by `-`, then its id (names are not unique).
const SLUG_SQL: &str = "lower(trim(both '-' from regexp_replace(team.name, '[^A-Za-z0-9]+', '-', 'g'))) || '-' || team.id";
/// How long operation 2 waits for the lock on `team` before it fails (and can be resumed).
const LOCK_TIMEOUT: &str = "10s";

pub fn definition() -> MigrationDefinition {
    MigrationDefinition::new(NAME, "Give every team a slug made from its name, filled in batches, then make it NOT NULL")
        .versions("0.1.0", "0.5.0")
        .parameter(ParameterSpec::integer("batch_size", "Teams filled per transaction", 1000, 1, 100_000))
        .is_required(is_required)
        .precheck(precheck)
        .operation(Operation::postgres(
            "add the nullable column slug to team",
            &format!("ALTER TABLE {TEAM_TABLE} ADD COLUMN IF NOT EXISTS slug text"),
            &format!("ALTER TABLE {TEAM_TABLE} DROP COLUMN IF EXISTS slug"),
        ))
        .operation(
            PostgresBatches {
                table: TEAM_TABLE.into(),
                key: "id".into(),
                set: format!("slug = {SLUG_SQL}"),
                pending: "team.slug IS NULL".into(),
                batch_size_parameter: "batch_size".into(),
            }
            .operation("fill slug batch_size teams at a time, in id order"),
        )
        .operation(Operation::rust(
            "fill the teams created meanwhile and make slug NOT NULL, in one transaction",
            fill_the_rest_and_require,
            nothing_to_undo,
        ))
}

async fn table_exists(context: &MigrationContext) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(TEAM_TABLE).fetch_one(&context.postgres).await?)
}

/// Needed when `team` exists without `slug`.
async fn is_required(context: MigrationContext) -> Result<bool> {
    if !table_exists(&context).await? {
        return Ok(false);
    }
    let has_slug: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns
                        WHERE table_schema = current_schema() AND table_name = $1 AND column_name = 'slug')",
    )
    .bind(TEAM_TABLE)
    .fetch_one(&context.postgres)
    .await?;
    Ok(!has_slug)
}

async fn precheck(context: MigrationContext) -> Result<CheckOutcome> {
    Ok(if table_exists(&context).await? {
        CheckOutcome::Pass
    } else {
        CheckOutcome::Fail(format!("the Postgres table {TEAM_TABLE} does not exist"))
    })
}

/// Operation 2: nothing can insert a team without a slug between the last fill and `SET NOT NULL`.
async fn fill_the_rest_and_require(context: MigrationContext) -> Result<()> {
    let mut transaction = context.postgres.begin().await?;
    sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")).execute(&mut *transaction).await?;
    sqlx::query(&format!("LOCK TABLE {TEAM_TABLE} IN SHARE ROW EXCLUSIVE MODE")).execute(&mut *transaction).await?;
    let filled = sqlx::query(&format!("UPDATE {TEAM_TABLE} AS team SET slug = {SLUG_SQL} WHERE team.slug IS NULL"))
        .execute(&mut *transaction)
        .await?
        .rows_affected();
    sqlx::query(&format!("ALTER TABLE {TEAM_TABLE} ALTER COLUMN slug SET NOT NULL")).execute(&mut *transaction).await?;
    transaction.commit().await?;
    tracing::info!(migration = NAME, filled, "filled the teams created during the batches; slug is NOT NULL");
    Ok(())
}
