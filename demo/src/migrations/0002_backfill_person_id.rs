//! 0002_backfill_person_id: gives every event the id of its person, so that queries by person need no join
//! with `person`: a new column `events.person_id` filled by one ClickHouse mutation.
//!
//! 0. build a lookup table from `person` (engine `Join`, keyed by `team_id:distinct_id`, held in memory);
//! 1. add the column `person_id UUID` to `events` (the zero UUID until filled);
//! 2. run `ALTER TABLE events UPDATE person_id = joinGet(lookup, ...) WHERE person_id = <zero>` and wait for
//!    it: a mutation runs in the background of the server, part by part; progress is the parts it has
//!    rewritten out of those it had to do (`system.mutations`), and its id is saved as the checkpoint;
//! 3. drop the lookup table.
//!
//! Resume: operation 2 first looks for a mutation of its own still pending on `events` (one it issued before
//! a crash, a shutdown or a stop the server could not act on) and waits for it rather than issuing another;
//! the `WHERE` makes issuing it again harmless anyway. Rows inserted after the mutation was created are not
//! touched by it: the product must write `person_id` itself before this runs.
//!
//! Stop: on servers with `KILL MUTATION` (19.3 and later) the runner kills the mutation; parts it already
//! rewrote keep their ids. ClickHouse 18.16 cannot kill a mutation: the migration is marked errored and the
//! mutation goes on to the end, as the error message says; resume waits for it. Rollback ends the mutation
//! first (kills it, or on 18.16 waits for it, within the rollback timeout) because a mutation left pending
//! over a dropped column or lookup table fails on every part forever; then it drops the column and the
//! lookup table.
//!
//! The lookup table's place depends on the server: 18.16 runs a mutation in the server's default database
//! and its `joinGet` takes neither a database-qualified name nor several keys, so there the table lives in
//! that database under a name carrying the product database's; from 20.8 it sits next to `events` and is
//! named with its database. One string key on every version (multi-key `Join` tables broke in mutations on
//! 25.6, ClickHouse issue #83407).
//!
//! On a cluster the column goes to `events_local` (a replicated `ALTER`) and to the `Distributed` `events`
//! on every node, and the lookup table is built on every node from its copy of `person` (replicated to every
//! node), since each replica runs the mutation on its own parts; the mutation is issued and waited for on
//! every shard at once, on one replica each (replication brings it to the other), each shard with its own
//! checkpoint; a stop or a rollback ends it on every shard.
//!
//! It depends on 0001_events_sort_key: 0001 copies the columns of `events` into a table made `AS events`
//! before the copy, and rolls back by renaming the original back; a column added while 0001 is errored half
//! way would make its resume fail and its rollback silently drop `person_id` with the copy.

use crate::migrations::events_sort_key;
use crate::{events_storage_table, EVENTS_TABLE};
use engine::clickhouse::{quote_identifier, QueryOptions};
use engine::context::MigrationContext;
use engine::definition::{nothing_to_undo, CheckOutcome, MigrationDefinition, Operation};
use engine::parameters::quote_string;
use engine::recipes::mutation::Mutation;
use engine::tables::table_exists;
use engine::Result;

pub const NAME: &str = "0002_backfill_person_id";
const PERSON: &str = "person";
pub const COLUMN: &str = "person_id";
/// The lookup table's name next to `events`; on old servers it is prefixed with the product database's name.
pub const LOOKUP_TABLE: &str = "person_lookup_0002";
/// The key of a person in the lookup table, computed the same way from `events` and `person`.
const PERSON_KEY: &str = "concat(toString(team_id), ':', distinct_id)";
/// The text every mutation this migration issues contains, to find them in `system.mutations`.
const MUTATION_MARKER: &str = "person_id = joinGet(";
const ZERO_UUID: &str = "toUUID('00000000-0000-0000-0000-000000000000')";

pub fn definition() -> MigrationDefinition {
    MigrationDefinition::new(NAME, "Add person_id to events and fill it from the person table with a mutation")
        .versions("0.1.0", "0.5.0")
        .requires_clickhouse("18.16")
        .depends_on(events_sort_key::NAME)
        .is_required(is_required)
        .precheck(precheck)
        .operation(Operation::rust("build the person lookup table (engine Join) from person", build_lookup, drop_lookup))
        .operation(Operation::rust("add the column person_id UUID to events", add_column, drop_column))
        .operation(
            Operation::rust("fill person_id with a mutation and wait until it has rewritten every part", fill_column, end_mutations)
                .on_interrupt(interrupt_mutation),
        )
        .operation(Operation::rust("drop the person lookup table", drop_lookup, nothing_to_undo))
}

/// Needed when `events` exists without `person_id`.
async fn is_required(context: MigrationContext) -> Result<bool> {
    Ok(table_exists(&context.clickhouse, EVENTS_TABLE).await? && !has_column(&context, events(&context)).await?)
}

async fn precheck(context: MigrationContext) -> Result<CheckOutcome> {
    for name in [EVENTS_TABLE, PERSON] {
        if !table_exists(&context.clickhouse, name).await? {
            return Ok(CheckOutcome::Fail(format!("{}.{name} does not exist", context.clickhouse.database())));
        }
    }
    Ok(CheckOutcome::Pass)
}

/// The table the mutation rewrites: `events`, or on a cluster the `events_local` behind it.
fn events(context: &MigrationContext) -> &'static str {
    events_storage_table(&context.clickhouse)
}

async fn has_column(context: &MigrationContext, table: &str) -> Result<bool> {
    let columns: u64 = context
        .clickhouse
        .client()
        .query("SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?")
        .bind(context.clickhouse.database())
        .bind(table)
        .bind(COLUMN)
        .fetch_one()
        .await?;
    Ok(columns > 0)
}

/// Where the lookup table lives on this server, and how the mutation names it.
struct Lookup {
    /// `database`.`table`, quoted, for DDL.
    table: String,
    /// The first argument of `joinGet`.
    join_get_name: String,
    /// On old servers the lookup table lives in the server's default database, and the `ALTER` naming it must
    /// be sent from there, since it is checked in the session's database when it is issued and run in the
    /// server's default database afterwards.
    in_server_default_database: bool,
}

/// From 20.8 `joinGet` resolves a database-qualified name, also inside a mutation; before (18.16 tested,
/// 19.17 in ClickHouse issue #12012) a mutation resolves it in the server's default database only.
async fn lookup(context: &MigrationContext) -> Result<Lookup> {
    let database = context.clickhouse.database();
    if context.clickhouse.capabilities().qualified_join_get_in_mutations() {
        return Ok(Lookup {
            table: context.clickhouse.qualified(LOOKUP_TABLE),
            join_get_name: format!("{database}.{LOOKUP_TABLE}"),
            in_server_default_database: false,
        });
    }
    let server_default: String = context.clickhouse.server_default_database_client().query("SELECT currentDatabase()").fetch_one().await?;
    let name = format!("{database}_{LOOKUP_TABLE}");
    Ok(Lookup {
        table: format!("{}.{}", quote_identifier(&server_default), quote_identifier(&name)),
        join_get_name: name,
        in_server_default_database: true,
    })
}

/// Operation 0 (and 3): a fresh lookup table from the current persons; `FINAL` collapses the rows
/// `ReplacingMergeTree` has not merged yet, so each key has one person.
async fn build_lookup(context: MigrationContext) -> Result<()> {
    let lookup = lookup(&context).await?;
    let on_cluster = context.clickhouse.on_cluster();
    context.clickhouse_execute_part(&context.clickhouse.drop_table_sql(&lookup.table), &QueryOptions::default(), 0.0..0.0).await?;
    context
        .clickhouse_execute(
            &format!(
                "CREATE TABLE {}{on_cluster} ENGINE = Join(ANY, LEFT, person_key)
                 AS SELECT {PERSON_KEY} AS person_key, id FROM {} FINAL",
                lookup.table,
                context.clickhouse.qualified(PERSON)
            ),
            &QueryOptions::default(),
        )
        .await
}

async fn drop_lookup(context: MigrationContext) -> Result<()> {
    let lookup = lookup(&context).await?;
    context.clickhouse_execute(&context.clickhouse.drop_table_sql(&lookup.table), &QueryOptions::default()).await
}

/// The tables that get the column, in the order it is added: `events`, or on a cluster `events_local` then the
/// `Distributed` `events` over it.
fn tables_with_column(context: &MigrationContext) -> Vec<&'static str> {
    let mut tables = vec![events(context)];
    if tables[0] != EVENTS_TABLE {
        tables.push(EVENTS_TABLE);
    }
    tables
}

/// Operation 1 (18.16 has no `ADD COLUMN IF NOT EXISTS`: the check is ours).
async fn add_column(context: MigrationContext) -> Result<()> {
    for table in tables_with_column(&context) {
        if !has_column(&context, table).await? {
            alter_everywhere(&context, table, &format!("ADD COLUMN {COLUMN} UUID")).await?;
        }
    }
    Ok(())
}

async fn drop_column(context: MigrationContext) -> Result<()> {
    for table in tables_with_column(&context).into_iter().rev() {
        if has_column(&context, table).await? {
            alter_everywhere(&context, table, &format!("DROP COLUMN {COLUMN}")).await?;
        }
    }
    Ok(())
}

/// `ALTER TABLE table change` on every node: the replicated `events_local` once with `ON CLUSTER`, the
/// `Distributed` `events` node by node (`ON CLUSTER` refuses it, its shards replicating internally).
async fn alter_everywhere(context: &MigrationContext, table: &str, change: &str) -> Result<()> {
    let qualified = context.clickhouse.qualified(table);
    if table == EVENTS_TABLE {
        return context.clickhouse_execute_on_every_node(&format!("ALTER TABLE {qualified} {change}"), &QueryOptions::default()).await;
    }
    context
        .clickhouse_execute(&format!("ALTER TABLE {qualified}{} {change}", context.clickhouse.on_cluster()), &QueryOptions::default())
        .await
}

/// The mutation that fills the column, as this server needs it sent.
async fn fill_mutation(context: &MigrationContext) -> Result<Mutation> {
    let lookup = lookup(context).await?;
    let command =
        format!("UPDATE {COLUMN} = joinGet({}, 'id', {PERSON_KEY}) WHERE {COLUMN} = {ZERO_UUID}", quote_string(&lookup.join_get_name));
    Ok(Mutation {
        // On a replicated table, current servers refuse `joinGet` in a mutation unless told it is safe: the lookup
        // is built on every node from the same replicated `person`, so every replica computes the same.
        settings: context.clickhouse.capabilities().join_get_mutation_settings(),
        from_server_default_database: lookup.in_server_default_database,
        ..Mutation::new(events(context), &command, MUTATION_MARKER)
    })
}

/// Operation 2, on every shard: adopts a pending mutation of its own, or issues one, then waits for it.
async fn fill_column(context: MigrationContext) -> Result<()> {
    fill_mutation(&context).await?.run(&context).await
}

/// What a stop, failure or failed health check does to the mutation, on every shard: kills it where the
/// server can.
async fn interrupt_mutation(context: MigrationContext) -> Result<Option<String>> {
    fill_mutation(&context).await?.interrupt(&context).await
}

/// Rollback of operation 2, on every shard: no mutation of ours may stay pending once the column or the
/// lookup table is dropped.
async fn end_mutations(context: MigrationContext) -> Result<()> {
    fill_mutation(&context).await?.end(&context).await
}
