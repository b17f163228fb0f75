//! Fuzzes request headers, as any client may send them (the session cookie, Host, Origin): see
//! server::input_properties::request_headers.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| server::input_properties::request_headers(data));
