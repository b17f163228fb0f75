//! Fuzzes `KEY=VALUE` lines as `--param` gives them: see engine::input_properties::parameter_assignments.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| engine::input_properties::parameter_assignments(data));
