//! Fuzzes a JSON object of parameter values, as the page sends it: see engine::input_properties::parameter_json.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| engine::input_properties::parameter_json(data));
