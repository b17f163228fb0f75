# Shared by the scripts in this folder: the repo root, logging, and how to build for the browser.
# Sourced, never run.

AMIGO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export AMIGO_ROOT

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# The exact wasm-bindgen version in Cargo.lock: the CLI must match it.
locked_wasm_bindgen_version() {
    awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$AMIGO_ROOT/Cargo.lock"
}

# True when rustup's toolchain has the wasm32 std (rustup target add succeeded at some point).
rustup_has_wasm_std() {
    command -v rustup >/dev/null 2>&1 &&
        [ -d "$(rustc --print sysroot 2>/dev/null)/lib/rustlib/wasm32-unknown-unknown/lib" ]
}

# Fills WASM_BUILD with the command that builds a crate for wasm32: rustup's toolchain when it has the
# wasm std, else Debian's rustc-web with std built from source (see shared/TOOLCHAIN.md).
wasm_build_command() {
    if rustup_has_wasm_std; then
        WASM_BUILD=(cargo build --target wasm32-unknown-unknown)
    else
        WASM_BUILD=(env RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc
            CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld
            /usr/bin/cargo build --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort)
    fi
}

# Builds the browser bundle into target/site: the WASM (profile wasm-release), its JS glue, the stylesheet and
# the public files, each of the first three with its brotli and gzip copies beside it.
build_front() {
    local site=target/site
    wasm_build_command
    # `|| return 1`: set -e does not apply inside a function called from `build_front || ...`.
    "${WASM_BUILD[@]}" --quiet -p frontend --profile wasm-release --target-dir target/front || return 1
    mkdir -p "$site/pkg"
    # The name section (function names for stack traces) is over half of the .wasm: the browser gets none.
    wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section \
        --out-dir "$site/pkg" --out-name amigo \
        target/front/wasm32-unknown-unknown/wasm-release/frontend.wasm || return 1
    cp style/main.css "$site/pkg/amigo.css"
    cp -R public/. "$site/"
    precompress "$site/pkg"/amigo_bg.wasm "$site/pkg"/amigo.js "$site/pkg"/amigo.css
}

# Writes FILE.br and FILE.gz beside each file, at the strongest settings: the server sends the one the browser
# accepts (brotli first) instead of compressing on every request.
precompress() {
    local file
    for file in "$@"; do
        brotli --force --best --keep --output="$file.br" "$file" || return 1
        gzip --force --best --keep --no-name "$file" || return 1
    done
}
