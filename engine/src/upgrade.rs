//! The upgrade gate: an instance may move to a version only when every migration that version drops
//! (whose max_version is below it) has completed.

use crate::record::MigrationRecord;
use crate::status::Status;
use crate::version::Version;

/// A migration that must complete before the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMigration {
    pub name: String,
    pub min_version: String,
    pub max_version: String,
}

/// The answer to "may this instance run version `target`?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeCheck {
    pub target: Version,
    pub pending: Vec<PendingMigration>,
}

impl UpgradeCheck {
    pub fn evaluate(target: Version, records: &[MigrationRecord]) -> UpgradeCheck {
        let pending = records
            .iter()
            .filter(|record| record.status != Status::Completed)
            .filter(|record| Version::parse(&record.max_version).is_some_and(|max| max < target))
            .map(|record| PendingMigration {
                name: record.name.clone(),
                min_version: record.min_version.clone(),
                max_version: record.max_version.clone(),
            })
            .collect();
        UpgradeCheck { target, pending }
    }

    pub fn is_ready(&self) -> bool {
        self.pending.is_empty()
    }

    /// The message printed when the upgrade is refused.
    pub fn refusal(&self) -> String {
        let mut message = String::from("List of async migrations to be applied:\n");
        for migration in &self.pending {
            message.push_str(&format!(
                "- {} - Available on amigo versions {} - {}\n",
                migration.name, migration.min_version, migration.max_version
            ));
        }
        message.push_str("Async migrations are not completed.");
        message
    }
}
