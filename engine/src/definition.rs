//! What a migration is, as written in Rust: its description, versions, dependencies, parameters, checks and
//! ordered operations, each operation with its rollback.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::clickhouse::quote_identifier;
use crate::context::MigrationContext;
use crate::parameters::{ParameterSpec, Parameters};
use crate::preview::OperationPreview;
use crate::record::Registration;
use crate::version::{Version, VersionRange};
use crate::{Error, Result};

/// The answer of a precheck or health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    Pass,
    /// The check failed; the text says why and what to do.
    Fail(String),
}

/// An async function over the migration's context: an operation, a rollback or a check.
pub type StepFn<T> = Arc<dyn Fn(MigrationContext) -> BoxFuture<'static, Result<T>> + Send + Sync>;

fn step_fn<T, F, Fut>(function: F) -> StepFn<T>
where
    F: Fn(MigrationContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    Arc::new(move |context| Box::pin(function(context)))
}

/// The rollback of an operation that leaves nothing to undo (what it wrote, an earlier operation's rollback
/// removes).
pub async fn nothing_to_undo(_context: MigrationContext) -> Result<()> {
    Ok(())
}

/// One step of a migration and how to undo it.
#[derive(Clone)]
pub struct Operation {
    /// A short description shown on the page next to the operation index.
    pub description: String,
    pub action: OperationAction,
    /// Ends work the operation left running in the server when it is stopped, fails or fails a health check
    /// (see [`Operation::on_interrupt`]).
    pub on_interrupt: Option<StepFn<Option<String>>>,
    /// What the operation would send and touch, read from the servers without changing them: how a plan shows
    /// a recipe (see [`Operation::with_preview`]).
    pub preview: Option<StepFn<OperationPreview>>,
}

/// What an operation runs. SQL may name `{database}` (the product's ClickHouse database, quoted) and
/// `{parameter_name}` (a parameter, rendered as an escaped literal or quoted identifier).
#[derive(Clone)]
pub enum OperationAction {
    ClickHouse {
        sql: String,
        /// Empty when there is nothing to undo.
        rollback: String,
        /// ClickHouse settings sent with the statement.
        settings: Vec<(String, String)>,
        /// Sent as `max_execution_time`; the statement errors when it runs longer.
        timeout: Option<Duration>,
    },
    Postgres {
        sql: String,
        rollback: String,
    },
    Rust {
        run: StepFn<()>,
        rollback: StepFn<()>,
    },
}

impl Operation {
    pub fn clickhouse(description: &str, sql: &str, rollback: &str) -> Operation {
        Operation {
            description: description.into(),
            action: OperationAction::ClickHouse { sql: sql.into(), rollback: rollback.into(), settings: Vec::new(), timeout: None },
            on_interrupt: None,
            preview: None,
        }
    }

    pub fn postgres(description: &str, sql: &str, rollback: &str) -> Operation {
        Operation {
            description: description.into(),
            action: OperationAction::Postgres { sql: sql.into(), rollback: rollback.into() },
            on_interrupt: None,
            preview: None,
        }
    }

    pub fn rust<Run, RunFuture, Rollback, RollbackFuture>(description: &str, run: Run, rollback: Rollback) -> Operation
    where
        Run: Fn(MigrationContext) -> RunFuture + Send + Sync + 'static,
        RunFuture: Future<Output = Result<()>> + Send + 'static,
        Rollback: Fn(MigrationContext) -> RollbackFuture + Send + Sync + 'static,
        RollbackFuture: Future<Output = Result<()>> + Send + 'static,
    {
        Operation {
            description: description.into(),
            action: OperationAction::Rust { run: step_fn(run), rollback: step_fn(rollback) },
            on_interrupt: None,
            preview: None,
        }
    }

    /// Adds a ClickHouse setting to a ClickHouse operation.
    pub fn with_setting(mut self, name: &str, value: &str) -> Operation {
        if let OperationAction::ClickHouse { settings, .. } = &mut self.action {
            settings.push((name.into(), value.into()));
        }
        self
    }

    /// Adds what the runner does when this operation is stopped, fails or fails a health check, after killing
    /// its current query: for work that goes on in the server after the statement that started it returned
    /// (a mutation). Not called when the runner shuts down or loses its lease: that work then goes on, and a
    /// resume finds it. Its text, if any, is added to the recorded error message.
    pub fn on_interrupt<F, Fut>(mut self, interrupt: F) -> Operation
    where
        F: Fn(MigrationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<String>>> + Send + 'static,
    {
        self.on_interrupt = Some(step_fn(interrupt));
        self
    }

    /// Adds how a plan shows this operation: the statements it would send and the tables it would touch as the
    /// servers are now, read without changing anything. An operation without one is planned as code.
    pub fn with_preview<F, Fut>(mut self, preview: F) -> Operation
    where
        F: Fn(MigrationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<OperationPreview>> + Send + 'static,
    {
        self.preview = Some(step_fn(preview));
        self
    }

    /// Limits how long a ClickHouse operation's statement may run.
    pub fn with_timeout(mut self, limit: Duration) -> Operation {
        if let OperationAction::ClickHouse { timeout, .. } = &mut self.action {
            *timeout = Some(limit);
        }
        self
    }
}

/// A migration as its author defines it.
#[derive(Clone)]
pub struct MigrationDefinition {
    pub name: String,
    pub description: String,
    /// amigo versions this migration may run on.
    pub versions: VersionRange,
    /// Migrations that must be completed before this one starts.
    pub depends_on: Vec<String>,
    pub clickhouse_versions: VersionRange,
    pub postgres_versions: VersionRange,
    pub parameters: Vec<ParameterSpec>,
    /// False when this instance already has the result (e.g. the table was created with the new schema).
    pub is_required: Option<StepFn<bool>>,
    pub precheck: Option<StepFn<CheckOutcome>>,
    /// Run every health-check interval while the migration runs; a failure stops it.
    pub health_check: Option<StepFn<CheckOutcome>>,
    /// Asked whenever an operation calls [`MigrationContext::hold_between_units`] (e.g. between
    /// partitions); a failing answer pauses the run, shown as `waiting: <reason>`, until it passes.
    pub throttle: Option<StepFn<CheckOutcome>>,
    pub operations: Vec<Operation>,
}

impl MigrationDefinition {
    /// A migration valid on every amigo version with no checks; the builder methods add the rest.
    pub fn new(name: &str, description: &str) -> MigrationDefinition {
        MigrationDefinition {
            name: name.into(),
            description: description.into(),
            versions: VersionRange::default(),
            depends_on: Vec::new(),
            clickhouse_versions: VersionRange::default(),
            postgres_versions: VersionRange::default(),
            parameters: Vec::new(),
            is_required: None,
            precheck: None,
            health_check: None,
            throttle: None,
            operations: Vec::new(),
        }
    }

    /// The amigo versions this migration runs on, inclusive.
    pub fn versions(mut self, min: &str, max: &str) -> MigrationDefinition {
        self.versions = VersionRange { min: Some(parse_version(min)), max: Some(parse_version(max)) };
        self
    }

    pub fn depends_on(mut self, migration: &str) -> MigrationDefinition {
        self.depends_on.push(migration.into());
        self
    }

    /// The lowest ClickHouse version the operations' SQL needs.
    pub fn requires_clickhouse(mut self, min: &str) -> MigrationDefinition {
        self.clickhouse_versions.min = Some(parse_version(min));
        self
    }

    pub fn requires_postgres(mut self, min: &str) -> MigrationDefinition {
        self.postgres_versions.min = Some(parse_version(min));
        self
    }

    pub fn parameter(mut self, spec: ParameterSpec) -> MigrationDefinition {
        self.parameters.push(spec);
        self
    }

    pub fn is_required<F, Fut>(mut self, check: F) -> MigrationDefinition
    where
        F: Fn(MigrationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<bool>> + Send + 'static,
    {
        self.is_required = Some(step_fn(check));
        self
    }

    pub fn precheck<F, Fut>(mut self, check: F) -> MigrationDefinition
    where
        F: Fn(MigrationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CheckOutcome>> + Send + 'static,
    {
        self.precheck = Some(step_fn(check));
        self
    }

    pub fn health_check<F, Fut>(mut self, check: F) -> MigrationDefinition
    where
        F: Fn(MigrationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CheckOutcome>> + Send + 'static,
    {
        self.health_check = Some(step_fn(check));
        self
    }

    pub fn throttle<F, Fut>(mut self, check: F) -> MigrationDefinition
    where
        F: Fn(MigrationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CheckOutcome>> + Send + 'static,
    {
        self.throttle = Some(step_fn(check));
        self
    }

    pub fn operation(mut self, operation: Operation) -> MigrationDefinition {
        self.operations.push(operation);
        self
    }

    /// What the store records of this migration; an open end of its version range is `0` or `*`.
    pub fn registration(&self) -> Registration {
        Registration {
            name: self.name.clone(),
            description: self.description.clone(),
            min_version: self.versions.min.as_ref().map_or_else(|| "0".into(), Version::to_string),
            max_version: self.versions.max.as_ref().map_or_else(|| "*".into(), Version::to_string),
        }
    }
}

fn parse_version(text: &str) -> Version {
    Version::parse(text).unwrap_or_else(|| panic!("{text:?} is not a version"))
}

/// The SQL dialect a template is rendered for: how literals and identifiers are quoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    ClickHouse,
    Postgres,
}

impl MigrationDefinition {
    /// Fills `{database}` and `{parameter}` placeholders of a ClickHouse statement.
    pub fn render_clickhouse(&self, template: &str, context: &MigrationContext) -> Result<String> {
        self.render(template, context, Dialect::ClickHouse)
    }

    /// Fills `{parameter}` placeholders of a Postgres statement.
    pub fn render_postgres(&self, template: &str, context: &MigrationContext) -> Result<String> {
        self.render(template, context, Dialect::Postgres)
    }

    /// Replaces every placeholder ([`placeholders`]); other braces are left as written.
    fn render(&self, template: &str, context: &MigrationContext, dialect: Dialect) -> Result<String> {
        let mut failure = None;
        let rendered = fill_placeholders(template, |name| {
            self.placeholder_value(name, context, dialect).unwrap_or_else(|error| {
                failure.get_or_insert(error);
                String::new()
            })
        });
        failure.map_or(Ok(rendered), Err)
    }

    fn placeholder_value(&self, name: &str, context: &MigrationContext, dialect: Dialect) -> Result<String> {
        if name == "database" && dialect == Dialect::ClickHouse {
            return Ok(quote_identifier(context.clickhouse.database()));
        }
        let spec = self.parameters.iter().find(|spec| spec.name == name).ok_or_else(|| {
            Error::Migration(format!("{}: its SQL names {{{name}}}, which is neither {{database}} nor one of its parameters", self.name))
        })?;
        let value = context.parameters.get(name).unwrap_or(&spec.default);
        Ok(match dialect {
            Dialect::ClickHouse => Parameters::sql_literal(&spec.kind, value),
            Dialect::Postgres => Parameters::postgres_literal(&spec.kind, value),
        })
    }
}

/// `template` with each of its [`placeholders`] replaced by `value_of` its name.
pub(crate) fn fill_placeholders(template: &str, mut value_of: impl FnMut(&str) -> String) -> String {
    let mut rendered = String::with_capacity(template.len());
    let mut copied = 0;
    for (offset, name) in placeholders(template) {
        rendered.push_str(&template[copied..offset]);
        rendered.push_str(&value_of(name));
        copied = offset + name.len() + 2;
    }
    rendered.push_str(&template[copied..]);
    rendered
}

/// The placeholders of a SQL template, in order, each with the byte offset of its `{`: every `{name}` whose
/// name is lowercase letters, digits and `_`. Other braces are text.
pub fn placeholders(template: &str) -> Vec<(usize, &str)> {
    let mut found = Vec::new();
    let mut offset = 0;
    while let Some(open) = template[offset..].find('{').map(|open| offset + open) {
        let after = &template[open + 1..];
        let name = after
            .find('}')
            .map(|close| &after[..close])
            .filter(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        match name {
            Some(name) => {
                found.push((open, name));
                offset = open + name.len() + 2;
            }
            None => offset = open + 1,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_are_lowercase_names_in_braces() {
        assert_eq!(placeholders("ALTER TABLE {database}.t ADD COLUMN {column} String"), [(12, "database"), (36, "column")]);
        assert_eq!(placeholders("SELECT '{\"a\": 1}', {Upper}, {}, {{nested}}"), [(33, "nested")]);
        assert_eq!(placeholders("no braces"), []);
    }
}
