//! What a run of a migration would do, before it runs: each operation with its statements rendered exactly as
//! they will be sent for the given parameters. Building a plan changes nothing.

use serde::Serialize;

use crate::context::MigrationContext;
use crate::definition::{MigrationDefinition, OperationAction};
use crate::Result;

/// A migration's operations as a run with given parameters would execute them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub migration: String,
    pub description: String,
    /// The parameter values the plan was rendered with, defaults filled in.
    pub parameters: serde_json::Value,
    pub operations: Vec<PlannedOperation>,
}

/// One operation of a [`Plan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedOperation {
    pub description: String,
    #[serde(flatten)]
    pub work: PlannedWork,
}

/// What an operation sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlannedWork {
    /// A ClickHouse statement, its rollback (empty when there is nothing to undo) and the settings sent with it.
    Clickhouse { sql: String, rollback: String, settings: Vec<(String, String)> },
    /// A Postgres statement and its rollback.
    Postgres { sql: String, rollback: String },
    /// Code (a recipe, or a product's Rust): its statements depend on what it reads as it runs.
    Code,
}

impl Plan {
    /// The plan of `definition` in `context` (its parameters, the product's database).
    pub(crate) fn of(definition: &MigrationDefinition, context: &MigrationContext) -> Result<Plan> {
        let operations = definition
            .operations
            .iter()
            .map(|operation| {
                let work = match &operation.action {
                    OperationAction::ClickHouse { sql, rollback, settings, .. } => PlannedWork::Clickhouse {
                        sql: definition.render_clickhouse(sql, context)?,
                        rollback: definition.render_clickhouse(rollback, context)?,
                        settings: settings.clone(),
                    },
                    OperationAction::Postgres { sql, rollback } => PlannedWork::Postgres {
                        sql: definition.render_postgres(sql, context)?,
                        rollback: definition.render_postgres(rollback, context)?,
                    },
                    OperationAction::Rust { .. } => PlannedWork::Code,
                };
                Ok(PlannedOperation { description: operation.description.clone(), work })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Plan {
            migration: definition.name.clone(),
            description: definition.description.clone(),
            parameters: context.parameters.to_json(),
            operations,
        })
    }
}
