//! Typed migration parameters: their specs, parsing from `KEY=VALUE` and JSON, validation, and rendering
//! into SQL as escaped literals or quoted identifiers (a parameter never reaches SQL unescaped).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clickhouse::quote_identifier;

/// Longest text a parameter may hold.
pub const MAX_TEXT_LENGTH: usize = 1024;

pub use crate::status::ParameterKind;

/// One parameter value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParameterValue {
    Integer(i64),
    Boolean(bool),
    Text(String),
}

impl fmt::Display for ParameterValue {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParameterValue::Integer(value) => write!(formatter, "{value}"),
            ParameterValue::Boolean(value) => write!(formatter, "{value}"),
            ParameterValue::Text(value) => formatter.write_str(value),
        }
    }
}

/// A parameter a migration takes: its name, type, default and what it means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParameterSpec {
    pub name: String,
    pub description: String,
    pub kind: ParameterKind,
    pub default: ParameterValue,
    /// Staff may change it while the migration runs (`Engine::adjust`); the operations read it again at each
    /// unit of work with [`crate::context::MigrationContext::integer_now`].
    #[serde(default)]
    pub adjustable: bool,
}

impl ParameterSpec {
    pub fn integer(name: &str, description: &str, default: i64, min: i64, max: i64) -> ParameterSpec {
        ParameterSpec::new(name, description, ParameterKind::Integer { min, max }, ParameterValue::Integer(default))
    }

    pub fn boolean(name: &str, description: &str, default: bool) -> ParameterSpec {
        ParameterSpec::new(name, description, ParameterKind::Boolean, ParameterValue::Boolean(default))
    }

    pub fn identifier(name: &str, description: &str, default: &str) -> ParameterSpec {
        ParameterSpec::new(name, description, ParameterKind::Identifier, ParameterValue::Text(default.into()))
    }

    pub fn text(name: &str, description: &str, default: &str, max_length: usize) -> ParameterSpec {
        ParameterSpec::new(name, description, ParameterKind::Text { max_length }, ParameterValue::Text(default.into()))
    }

    fn new(name: &str, description: &str, kind: ParameterKind, default: ParameterValue) -> ParameterSpec {
        let spec = ParameterSpec { name: name.into(), description: description.into(), kind, default, adjustable: false };
        if let Err(reason) = spec.check(&spec.default) {
            panic!("the default of parameter {name} is invalid: {reason}");
        }
        spec
    }

    /// The same parameter, adjustable while the migration runs.
    pub fn adjustable(self) -> ParameterSpec {
        ParameterSpec { adjustable: true, ..self }
    }

    /// Reads a value typed on a command line or in a form.
    pub fn parse(&self, text: &str) -> Result<ParameterValue, String> {
        let value = match self.kind {
            ParameterKind::Integer { .. } => {
                ParameterValue::Integer(text.trim().parse().map_err(|_| format!("{text:?} is not a whole number"))?)
            }
            ParameterKind::Boolean => ParameterValue::Boolean(match text.trim() {
                "true" | "yes" | "on" | "1" => true,
                "false" | "no" | "off" | "0" => false,
                _ => return Err(format!("{text:?} is not true or false")),
            }),
            ParameterKind::Identifier | ParameterKind::Text { .. } => ParameterValue::Text(text.to_string()),
        };
        self.check(&value)?;
        Ok(value)
    }

    /// Reads a value sent as JSON.
    pub fn from_json(&self, json: &serde_json::Value) -> Result<ParameterValue, String> {
        let value = match (&self.kind, json) {
            (ParameterKind::Integer { .. }, serde_json::Value::Number(number)) => {
                ParameterValue::Integer(number.as_i64().ok_or_else(|| format!("{number} is not a whole number"))?)
            }
            (ParameterKind::Boolean, serde_json::Value::Bool(flag)) => ParameterValue::Boolean(*flag),
            (ParameterKind::Identifier | ParameterKind::Text { .. }, serde_json::Value::String(text)) => ParameterValue::Text(text.clone()),
            (_, serde_json::Value::String(text)) => return self.parse(text),
            (kind, other) => return Err(format!("{other} is not {}", describe_kind(kind))),
        };
        self.check(&value)?;
        Ok(value)
    }

    /// Whether `value` is one this parameter accepts, and if not why.
    pub(crate) fn check(&self, value: &ParameterValue) -> Result<(), String> {
        match (&self.kind, value) {
            (ParameterKind::Integer { min, max }, ParameterValue::Integer(number)) => {
                if number < min || number > max {
                    return Err(format!("{number} is out of range: it must be from {min} to {max}"));
                }
            }
            (ParameterKind::Boolean, ParameterValue::Boolean(_)) => {}
            (ParameterKind::Identifier, ParameterValue::Text(name)) => {
                let valid = !name.is_empty()
                    && name.len() <= 128
                    && name.chars().all(|character| character.is_ascii_alphanumeric() || character == '_')
                    && !name.starts_with(|character: char| character.is_ascii_digit());
                if !valid {
                    return Err(format!(
                        "{name:?} is not a table or column name: use letters, digits and _, not starting with a digit, at most 128"
                    ));
                }
            }
            (ParameterKind::Text { max_length }, ParameterValue::Text(text)) => {
                if text.chars().count() > *max_length {
                    return Err(format!("the text is longer than {max_length} characters"));
                }
                if text.chars().any(char::is_control) {
                    return Err("the text contains control characters".into());
                }
            }
            (kind, other) => return Err(format!("{other} is not {}", describe_kind(kind))),
        }
        Ok(())
    }
}

fn describe_kind(kind: &ParameterKind) -> &'static str {
    match kind {
        ParameterKind::Integer { .. } => "a whole number",
        ParameterKind::Boolean => "true or false",
        ParameterKind::Identifier => "a table or column name",
        ParameterKind::Text { .. } => "text",
    }
}

/// A parameter that was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    #[error("{migration} has no parameter {name:?}; it takes: {known}")]
    Unknown { migration: String, name: String, known: String },
    #[error("parameter {name} of {migration}: {reason}")]
    Invalid { migration: String, name: String, reason: String },
    #[error("{assignment:?} is not KEY=VALUE")]
    NotAnAssignment { assignment: String },
    #[error("parameter {name} of {migration} is given twice")]
    Repeated { migration: String, name: String },
    #[error("parameter {name} of {migration} cannot change while it runs; {adjustable}")]
    NotAdjustable { migration: String, name: String, adjustable: String },
}

/// A `KEY=VALUE` assignment from the command line: the key, trimmed, and the value as typed.
pub fn split_assignment(assignment: &str) -> Result<(&str, &str), ParameterError> {
    let (name, text) = assignment.split_once('=').ok_or_else(|| ParameterError::NotAnAssignment { assignment: assignment.into() })?;
    Ok((name.trim(), text))
}

/// Validated values for every parameter of a migration (defaults filled in), as stored with its run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Parameters(BTreeMap<String, ParameterValue>);

impl Parameters {
    /// Defaults overridden by `KEY=VALUE` assignments from the command line.
    pub fn from_assignments(migration: &str, specs: &[ParameterSpec], assignments: &[String]) -> Result<Parameters, ParameterError> {
        let mut given = BTreeMap::new();
        for assignment in assignments {
            let (name, text) = split_assignment(assignment)?;
            let spec = find_spec(migration, specs, name)?;
            let value = spec.parse(text).map_err(|reason| invalid(migration, spec, reason))?;
            if given.insert(spec.name.clone(), value).is_some() {
                return Err(ParameterError::Repeated { migration: migration.into(), name: spec.name.clone() });
            }
        }
        Ok(Parameters::with_defaults(specs, given))
    }

    /// The changes `values` (a JSON object, values typed or as text) make to a running migration's
    /// adjustable parameters, each checked against its spec: only those values, as they are stored.
    pub fn adjustments(
        migration: &str,
        specs: &[ParameterSpec],
        values: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ParameterError> {
        let mut changes = serde_json::Map::new();
        for (name, json) in values {
            let spec = find_spec(migration, specs, name)?;
            if !spec.adjustable {
                let adjustable: Vec<&str> = specs.iter().filter(|spec| spec.adjustable).map(|spec| spec.name.as_str()).collect();
                let adjustable = if adjustable.is_empty() {
                    "it has no adjustable parameters".to_string()
                } else {
                    format!("those that can: {}", adjustable.join(", "))
                };
                return Err(ParameterError::NotAdjustable { migration: migration.into(), name: spec.name.clone(), adjustable });
            }
            let value = spec.from_json(json).map_err(|reason| invalid(migration, spec, reason))?;
            changes.insert(spec.name.clone(), serde_json::to_value(value).unwrap_or_default());
        }
        Ok(changes)
    }

    /// Defaults overridden by a JSON object of values (from the page or a stored run).
    pub fn from_json(
        migration: &str,
        specs: &[ParameterSpec],
        values: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Parameters, ParameterError> {
        let mut given = BTreeMap::new();
        for (name, json) in values {
            let spec = find_spec(migration, specs, name)?;
            given.insert(spec.name.clone(), spec.from_json(json).map_err(|reason| invalid(migration, spec, reason))?);
        }
        Ok(Parameters::with_defaults(specs, given))
    }

    fn with_defaults(specs: &[ParameterSpec], mut given: BTreeMap<String, ParameterValue>) -> Parameters {
        for spec in specs {
            given.entry(spec.name.clone()).or_insert_with(|| spec.default.clone());
        }
        Parameters(given)
    }

    pub fn get(&self, name: &str) -> Option<&ParameterValue> {
        self.0.get(name)
    }

    /// An integer parameter; panics if the migration asks for one it does not declare (a bug in its definition).
    pub fn integer(&self, name: &str) -> i64 {
        match self.0.get(name) {
            Some(ParameterValue::Integer(value)) => *value,
            other => panic!("integer parameter {name} not declared (found {other:?})"),
        }
    }

    pub fn boolean(&self, name: &str) -> bool {
        match self.0.get(name) {
            Some(ParameterValue::Boolean(value)) => *value,
            other => panic!("boolean parameter {name} not declared (found {other:?})"),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// Renders `value` into Postgres SQL as a literal (or a quoted identifier for identifiers); assumes
    /// `standard_conforming_strings` (on since Postgres 9.1), where a backslash is an ordinary character.
    pub fn postgres_literal(kind: &ParameterKind, value: &ParameterValue) -> String {
        match (kind, value) {
            (ParameterKind::Identifier, ParameterValue::Text(name)) => format!("\"{}\"", name.replace('"', "\"\"")),
            (_, ParameterValue::Text(text)) => format!("'{}'", text.replace('\'', "''")),
            (_, ParameterValue::Integer(number)) => number.to_string(),
            (_, ParameterValue::Boolean(flag)) => flag.to_string(),
        }
    }

    /// Renders `value` into ClickHouse SQL as a literal (or a quoted identifier for identifiers).
    pub fn sql_literal(kind: &ParameterKind, value: &ParameterValue) -> String {
        match (kind, value) {
            (ParameterKind::Identifier, ParameterValue::Text(name)) => quote_identifier(name),
            (_, ParameterValue::Text(text)) => quote_string(text),
            (_, ParameterValue::Integer(number)) => number.to_string(),
            (_, ParameterValue::Boolean(flag)) => u8::from(*flag).to_string(),
        }
    }
}

fn find_spec<'a>(migration: &str, specs: &'a [ParameterSpec], name: &str) -> Result<&'a ParameterSpec, ParameterError> {
    specs.iter().find(|spec| spec.name == name).ok_or_else(|| ParameterError::Unknown {
        migration: migration.into(),
        name: name.into(),
        known: if specs.is_empty() {
            "no parameters".into()
        } else {
            specs.iter().map(|spec| spec.name.as_str()).collect::<Vec<_>>().join(", ")
        },
    })
}

fn invalid(migration: &str, spec: &ParameterSpec, reason: String) -> ParameterError {
    ParameterError::Invalid { migration: migration.into(), name: spec.name.clone(), reason }
}

/// A ClickHouse or Postgres string literal: single quotes, with backslashes and quotes escaped.
pub fn quote_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<ParameterSpec> {
        vec![
            ParameterSpec::integer("batch_size", "rows per batch", 1000, 1, 1_000_000),
            ParameterSpec::boolean("dry_run", "only report", false),
            ParameterSpec::identifier("archive_table", "where old partitions go", "orders_archive"),
        ]
    }

    #[test]
    fn defaults_fill_what_is_not_given() {
        let parameters = Parameters::from_assignments("m", &specs(), &["batch_size=50".into()]).unwrap();
        assert_eq!(parameters.integer("batch_size"), 50);
        assert_eq!(parameters.get("dry_run"), Some(&ParameterValue::Boolean(false)));
        assert_eq!(parameters.get("archive_table"), Some(&ParameterValue::Text("orders_archive".into())));
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let refuse = |assignment: &str| Parameters::from_assignments("m", &specs(), &[assignment.into()]).unwrap_err().to_string();
        assert_eq!(refuse("batch_size=0"), "parameter batch_size of m: 0 is out of range: it must be from 1 to 1000000");
        assert_eq!(refuse("batch_size=ten"), "parameter batch_size of m: \"ten\" is not a whole number");
        assert_eq!(refuse("dry_run=maybe"), "parameter dry_run of m: \"maybe\" is not true or false");
        assert!(refuse("archive_table=x; DROP TABLE orders").contains("is not a table or column name"));
        assert_eq!(refuse("colour=red"), "m has no parameter \"colour\"; it takes: batch_size, dry_run, archive_table");
        assert_eq!(refuse("batch_size"), "\"batch_size\" is not KEY=VALUE");
        let repeated = Parameters::from_assignments("m", &specs(), &["batch_size=1".into(), "batch_size=2".into()]);
        assert!(matches!(repeated, Err(ParameterError::Repeated { .. })));
    }

    #[test]
    fn json_values_must_have_the_right_type() {
        let json = |text: &str| serde_json::from_str::<serde_json::Map<_, _>>(text).unwrap();
        let parameters = Parameters::from_json("m", &specs(), &json(r#"{"batch_size": 7, "dry_run": true}"#)).unwrap();
        assert_eq!(parameters.integer("batch_size"), 7);
        assert!(Parameters::from_json("m", &specs(), &json(r#"{"batch_size": 1.5}"#)).is_err());
        assert!(Parameters::from_json("m", &specs(), &json(r#"{"dry_run": 3}"#)).is_err());
        assert_eq!(Parameters::from_json("m", &specs(), &json(r#"{"batch_size": "12"}"#)).unwrap().integer("batch_size"), 12);
    }

    #[test]
    fn values_render_as_escaped_sql() {
        assert_eq!(quote_string("it's \\ fine"), "'it\\'s \\\\ fine'");
        let text = ParameterKind::Text { max_length: 10 };
        assert_eq!(Parameters::sql_literal(&text, &ParameterValue::Text("a'b".into())), "'a\\'b'");
        assert_eq!(Parameters::sql_literal(&ParameterKind::Identifier, &ParameterValue::Text("orders".into())), "`orders`");
        assert_eq!(Parameters::sql_literal(&ParameterKind::Boolean, &ParameterValue::Boolean(true)), "1");
    }
}
