//! The `request_headers` fuzz target's seed corpus (`fuzz/seeds/request_headers/`) replayed through the same
//! property checks the target runs, so that they hold in every test run, not only when someone fuzzes.

#[test]
fn request_headers_keep_their_properties_on_every_seed() {
    engine::testing::replay_fuzz_seeds("request_headers", server::input_properties::request_headers);
}
