//! The browser's WASM keeps its link relocations (`--emit-relocs`): `wasm-split-cli` needs them to cut the
//! `#[lazy]` functions out into chunks of their own (`scripts/lib.sh`, `build_front`).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-cdylib=--emit-relocs");
    }
}
