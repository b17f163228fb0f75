//! The demo product's migrations, in the order they apply, and the end-to-end specs' set. Those a recipe serves
//! are files of `demo/migrations` (the format a product's AMIGO_MIGRATIONS_DIR holds), compiled in; the others
//! are Rust on the engine's public API.

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

/// The definition of a migration file compiled in. Its text is fixed at build time and every one is read by
/// this crate's tests, so a file that does not read is a bug of this crate: the panic says what is wrong.
fn compiled_in_file(path: &str, text: &str) -> MigrationDefinition {
    engine::loader::read_text(path, text).unwrap_or_else(|error| panic!("{error}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_migration_reads_and_the_set_checks() {
        let definitions = super::all();
        let names: Vec<&str> = definitions.iter().map(|definition| definition.name.as_str()).collect();
        assert_eq!(names, ["0001_events_sort_key", "0002_backfill_person_id", "0003_move_old_partitions", "0004_team_slug"]);
        engine::loader::check(&definitions).unwrap();
    }
}
