//! Fuzzes a version string, as `--to` or a server's `version()` gives it: see engine::input_properties::version_text.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| engine::input_properties::version_text(data));
