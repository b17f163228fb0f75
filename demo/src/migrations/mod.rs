//! The demo product's migrations, one file each, in the order they apply, and the end-to-end specs' set.

use engine::definition::MigrationDefinition;

pub mod e2e;

#[path = "0001_events_sort_key.rs"]
pub mod events_sort_key;

#[path = "0002_backfill_person_id.rs"]
pub mod backfill_person_id;

#[path = "0003_move_old_partitions.rs"]
pub mod move_old_partitions;

#[path = "0004_team_slug.rs"]
pub mod team_slug;

/// The demo product's migrations.
pub fn all() -> Vec<MigrationDefinition> {
    vec![events_sort_key::definition(), backfill_person_id::definition(), move_old_partitions::definition(), team_slug::definition()]
}
