//! 0001_events_sort_key: gives `events` a sort key that starts with the columns queries filter on and a
//! sample key, with the *rewrite a table* recipe ([`RewriteTable`]): a new table `events_0001_new` with the new
//! keys, a copy of `events` into it partition by partition (a checkpoint after each), catch-up passes for the
//! partitions that received inserts meanwhile, an atomic swap of the names that keeps the original as
//! `events_0001_backup`, the rows inserted around the swap copied over by `uuid`, and a verification of every
//! partition (with `verify_checksums`, of every row's content too). Nothing is deleted: the original stays
//! until an admin drops it. Rollback swaps it back and drops the new table.
//!
//! On a cluster the table rebuilt is `events_local`, the `ReplicatedMergeTree` behind the `Distributed`
//! `events`, on every shard at once, each shard with its own checkpoint.

use crate::{EVENTS_TABLE, EVENT_HASH};
use engine::definition::MigrationDefinition;
use engine::recipes::rewrite_table::RewriteTable;

pub const NAME: &str = "0001_events_sort_key";

pub fn definition() -> MigrationDefinition {
    let migration = MigrationDefinition::new(
        NAME,
        "Give the events table the sort key (team_id, day, event, distinct_id hash, uuid) and a sample key, copying it partition by partition into a new table",
    )
    .versions("0.1.0", "0.4.0")
    .requires_clickhouse("18.16");
    RewriteTable {
        table: EVENTS_TABLE.into(),
        new_table: "events_0001_new".into(),
        backup_table: "events_0001_backup".into(),
        order_by: Some("team_id, toDate(timestamp), event, cityHash64(distinct_id), uuid".into()),
        sample_by: Some("cityHash64(distinct_id)".into()),
        row_identity: "uuid".into(),
        row_checksum: Some(EVENT_HASH.into()),
        ..RewriteTable::default()
    }
    .define(migration)
}
