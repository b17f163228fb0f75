//! 0004_team_slug: the file `demo/migrations/0004_team_slug.toml` (Postgres SQL and the Postgres batches
//! recipe), compiled in. What it does is said in the file.

use engine::definition::MigrationDefinition;

pub const NAME: &str = "0004_team_slug";

pub fn definition() -> MigrationDefinition {
    super::compiled_in_file("demo/migrations/0004_team_slug.toml", include_str!("../../migrations/0004_team_slug.toml"))
}
