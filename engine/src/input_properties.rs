//! What every parser of outside input must keep, whatever bytes it is given: it never panics, and a value
//! it accepts renders into SQL as exactly one literal that decodes back to the value, so no quote can
//! escape. The fuzz targets under `fuzz/` feed these checks; `tests/fuzz_seeds.rs` replays their seed
//! corpus through them in every test run. Each check panics when a property is broken.

use crate::parameters::{ParameterKind, ParameterSpec, ParameterValue, Parameters};
use crate::settings::{RuntimeSettings, SettingKind, SETTINGS};
use crate::version::Version;

/// One parameter of each kind, as a migration would declare them.
pub fn fuzzed_specs() -> Vec<ParameterSpec> {
    vec![
        ParameterSpec::integer("batch_size", "rows per batch", 1000, -5, 1_000_000),
        ParameterSpec::boolean("dry_run", "only report", false),
        ParameterSpec::identifier("archive_table", "where old partitions go", "orders_archive"),
        ParameterSpec::text("note", "free text", "none", 64),
    ]
}

/// `KEY=VALUE` lines, as `--param` gives them, and each line's value parsed by every spec on its own.
pub fn parameter_assignments(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let specs = fuzzed_specs();
    let assignments: Vec<String> = text.split('\n').map(str::to_string).collect();
    if let Ok(parameters) = Parameters::from_assignments("fuzzed", &specs, &assignments) {
        check_accepted(&specs, &parameters);
    }
    for assignment in &assignments {
        let value_text = assignment.split_once('=').map_or(assignment.as_str(), |(_, value)| value);
        for spec in &specs {
            if let Ok(value) = spec.parse(value_text) {
                check_literals(&spec.kind, &value);
            }
        }
    }
}

/// A JSON object of values, as the page sends them or a stored run holds them.
pub fn parameter_json(data: &[u8]) {
    let Ok(serde_json::Value::Object(values)) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let specs = fuzzed_specs();
    if let Ok(parameters) = Parameters::from_json("fuzzed", &specs, &values) {
        check_accepted(&specs, &parameters);
    }
    for value in values.values() {
        for spec in &specs {
            if let Ok(parsed) = spec.from_json(value) {
                check_literals(&spec.kind, &parsed);
            }
        }
    }
}

/// A version, as `--to`, `AMIGO_INSTANCE_VERSION` or a server's `version()` gives it.
pub fn version_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Some(version) = Version::parse(&text) else { return };
    let shown = version.to_string();
    assert!(shown.chars().all(|character| character.is_ascii_digit() || character == '.'), "{text:?} shows as {shown:?}");
    let again = Version::parse(&shown).unwrap_or_else(|| panic!("{shown:?} (from {text:?}) does not parse"));
    assert_eq!(again, version, "{text:?}");
    assert_eq!(again.to_string(), shown, "{text:?}");
    for other in ["0", "0.1.0", "18.16.1", "24.3.2.23", "4294967295.1"] {
        let other = Version::parse(other).expect("a version");
        assert_eq!(version.cmp(&other), other.cmp(&version).reverse(), "{text:?} against {other}");
    }
}

/// A setting's key and JSON value, one per line, as the settings tab sends them.
pub fn setting_value(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (key, value_text) = text.split_once('\n').unwrap_or((&text, ""));
    let Ok(value) = serde_json::from_str::<serde_json::Value>(value_text) else { return };
    let mut settings = RuntimeSettings::default();
    if settings.apply(key, &value).is_err() {
        assert_eq!(settings, RuntimeSettings::default(), "a refused value changed a setting");
        return;
    }
    for spec in SETTINGS {
        if let SettingKind::WholeNumber { min, max, .. } = spec.kind {
            let number = settings.value(spec.key).and_then(|value| value.as_u64()).unwrap_or_else(|| panic!("{} has no number", spec.key));
            assert!((min..=max).contains(&number), "{key} = {value} left {} at {number}", spec.key);
        }
    }
}

/// What accepted parameters promise: every spec has a value, they survive being stored as JSON, and each
/// renders as one literal.
fn check_accepted(specs: &[ParameterSpec], parameters: &Parameters) {
    let stored = parameters.to_json();
    let reread = Parameters::from_json("fuzzed", specs, stored.as_object().expect("parameters are stored as an object"));
    assert_eq!(reread.as_ref(), Ok(parameters), "stored as {stored}");
    for spec in specs {
        let value = parameters.get(&spec.name).unwrap_or_else(|| panic!("{} has no value", spec.name));
        check_literals(&spec.kind, value);
    }
}

/// The ClickHouse and Postgres renderings of `value` are each one literal holding exactly `value`.
pub fn check_literals(kind: &ParameterKind, value: &ParameterValue) {
    let clickhouse = Parameters::sql_literal(kind, value);
    let postgres = Parameters::postgres_literal(kind, value);
    match (kind, value) {
        (_, ParameterValue::Integer(number)) => {
            assert_eq!(clickhouse, number.to_string());
            assert_eq!(postgres, number.to_string());
        }
        (_, ParameterValue::Boolean(flag)) => {
            assert_eq!(clickhouse, u8::from(*flag).to_string());
            assert_eq!(postgres, flag.to_string());
        }
        (ParameterKind::Identifier, ParameterValue::Text(name)) => {
            assert_eq!(backslash_quoted(&clickhouse, '`').as_deref(), Some(name.as_str()), "ClickHouse identifier {clickhouse}");
            assert_eq!(doubled_quoted(&postgres, '"').as_deref(), Some(name.as_str()), "Postgres identifier {postgres}");
        }
        (_, ParameterValue::Text(text)) => {
            assert_eq!(backslash_quoted(&clickhouse, '\'').as_deref(), Some(text.as_str()), "ClickHouse string {clickhouse}");
            assert_eq!(doubled_quoted(&postgres, '\'').as_deref(), Some(text.as_str()), "Postgres string {postgres}");
            assert!(!text.contains('\0'), "Postgres text cannot hold NUL");
        }
    }
}

/// The contents of a ClickHouse quoted token: `quote`, then characters where `\` escapes only `\` or the
/// quote, then the closing `quote` as the very last character. `None` when the token ends early (a quote that
/// escaped), runs on, or holds an escape ClickHouse would read differently.
fn backslash_quoted(token: &str, quote: char) -> Option<String> {
    let mut characters = token.strip_prefix(quote)?.chars();
    let mut contents = String::new();
    while let Some(character) = characters.next() {
        match character {
            '\\' => match characters.next()? {
                escaped if escaped == '\\' || escaped == quote => contents.push(escaped),
                _ => return None,
            },
            closing if closing == quote => return characters.next().is_none().then_some(contents),
            other => contents.push(other),
        }
    }
    None
}

/// The contents of a Postgres quoted token: `quote`, characters where a doubled quote stands for one, then
/// the closing `quote` as the very last character.
fn doubled_quoted(token: &str, quote: char) -> Option<String> {
    let mut characters = token.strip_prefix(quote)?.chars().peekable();
    let mut contents = String::new();
    while let Some(character) = characters.next() {
        if character != quote {
            contents.push(character);
        } else if characters.peek() == Some(&quote) {
            characters.next();
            contents.push(quote);
        } else {
            return characters.next().is_none().then_some(contents);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoders_reject_literals_a_quote_escapes_from() {
        assert_eq!(backslash_quoted("'a\\'b'", '\'').as_deref(), Some("a'b"));
        assert_eq!(backslash_quoted("'a'b'", '\''), None);
        assert_eq!(backslash_quoted("'a''b'", '\''), None);
        assert_eq!(backslash_quoted("'a\\nb'", '\''), None);
        assert_eq!(backslash_quoted("'abc", '\''), None);
        assert_eq!(doubled_quoted("'it''s'", '\'').as_deref(), Some("it's"));
        assert_eq!(doubled_quoted("'a\\'b'", '\''), None);
        assert_eq!(doubled_quoted("\"a\"\"b\"", '"').as_deref(), Some("a\"b"));
        assert_eq!(doubled_quoted("'a' OR '1'='1'", '\''), None);
    }
}
