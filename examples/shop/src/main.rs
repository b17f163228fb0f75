//! The shop's amigo: the whole `amigo` command line (serve, worker, migrations ...) with the shop's Rust
//! migrations compiled in; its file migrations come from `AMIGO_MIGRATIONS_DIR` as for any amigo.

use std::process::ExitCode;

fn main() -> ExitCode {
    server::run(shop::definitions())
}
