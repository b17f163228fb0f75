//! The fuzz targets' seed corpus (`fuzz/seeds/<target>/`, with every crash the fuzzer ever found added to it)
//! replayed through the same property checks the targets run, so that they hold in every test run, not only
//! when someone fuzzes.

use engine::input_properties;
use engine::testing::replay_fuzz_seeds;

#[test]
fn parameter_assignments_keep_their_properties_on_every_seed() {
    replay_fuzz_seeds("parameter_assignments", input_properties::parameter_assignments);
}

#[test]
fn parameter_json_keeps_its_properties_on_every_seed() {
    replay_fuzz_seeds("parameter_json", input_properties::parameter_json);
}

#[test]
fn version_text_keeps_its_properties_on_every_seed() {
    replay_fuzz_seeds("version_text", input_properties::version_text);
}

#[test]
fn setting_values_keep_their_properties_on_every_seed() {
    replay_fuzz_seeds("setting_value", input_properties::setting_value);
}
