//! The migrations amigo ships, one file each, in the order they apply.

use crate::definition::MigrationDefinition;

pub mod e2e;

/// Every migration this binary knows.
pub fn all() -> Vec<MigrationDefinition> {
    Vec::new()
}
