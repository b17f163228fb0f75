//! The fuzz targets' seed corpus (`fuzz/seeds/<target>/`, with every crash the fuzzer ever found added to it)
//! replayed through the same property checks the targets run, so that they hold in every test run, not only
//! when someone fuzzes.

use std::path::PathBuf;

use engine::input_properties;

/// Runs `check` on every seed of `target`; there must be some.
fn replay(target: &str, check: fn(&[u8])) {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds").join(target);
    let mut seeds = 0;
    for entry in std::fs::read_dir(&folder).unwrap_or_else(|error| panic!("{}: {error}", folder.display())) {
        let path = entry.expect("a directory entry").path();
        let data = std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} broke a property of {target}", path.display());
        seeds += 1;
    }
    assert!(seeds >= 5, "{target} has only {seeds} seeds in {}", folder.display());
}

#[test]
fn parameter_assignments_keep_their_properties_on_every_seed() {
    replay("parameter_assignments", input_properties::parameter_assignments);
}

#[test]
fn parameter_json_keeps_its_properties_on_every_seed() {
    replay("parameter_json", input_properties::parameter_json);
}

#[test]
fn version_text_keeps_its_properties_on_every_seed() {
    replay("version_text", input_properties::version_text);
}

#[test]
fn setting_values_keep_their_properties_on_every_seed() {
    replay("setting_value", input_properties::setting_value);
}
