//! 0001_events_sort_key: the file `demo/migrations/0001_events_sort_key.toml` (the rewrite-a-table recipe),
//! compiled in. What it does is said in the file.

use engine::definition::MigrationDefinition;

pub const NAME: &str = "0001_events_sort_key";

pub fn definition() -> MigrationDefinition {
    super::compiled_in_file("demo/migrations/0001_events_sort_key.toml", include_str!("../../migrations/0001_events_sort_key.toml"))
}
