//! The `amigo` binary: the command line with no migrations of its own compiled in (a product's come from its
//! files, the demo's with `AMIGO_DEMO`).

use std::process::ExitCode;

fn main() -> ExitCode {
    server::run(vec![])
}
