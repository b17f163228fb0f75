//! Fuzzes a setting's key and JSON value, as the settings tab sends them: see engine::input_properties::setting_value.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| engine::input_properties::setting_value(data));
