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
# wasm std, else Debian's rustc-web with std built from source (see shared/TOOLCHAIN.md), linked by Debian's
# LLVM 19 wasm-ld (package lld-19): wasm-split-cli cannot read the relocations lld 14, Debian's `lld`, emits.
wasm_build_command() {
    if rustup_has_wasm_std; then
        WASM_BUILD=(cargo build --target wasm32-unknown-unknown)
    else
        WASM_BUILD=(env RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc
            CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=/usr/lib/llvm-19/bin/wasm-ld
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
    # The `#[lazy]` functions (the dialogs, the details, the errors table) go into WASM chunks of their own, fetched
    # by `__wasm_split.js` when first called: the main module, `amigo.wasm` here, is what the page loads
    # (frontend/build.rs keeps the link relocations this needs; bench/README.md, page weight).
    local split=target/front/split
    rm -rf "$split" && mkdir -p "$split" || return 1
    wasm-split-cli --out-name amigo target/front/wasm32-unknown-unknown/wasm-release/frontend.wasm "$split" || return 1
    # The name section (function names for stack traces) is over half of the .wasm: the browser gets none.
    # --keep-lld-exports: the chunks import the memory, the table and the shared functions from the main module.
    wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section --keep-lld-exports \
        --out-dir "$site/pkg" --out-name amigo "$split/amigo.wasm" || return 1
    # The chunks: split_<function>_<hash>.wasm for each `#[lazy]` function, chunk_<n>.wasm for code two share.
    rm -f "$site/pkg"/split_*.wasm* "$site/pkg"/chunk_*.wasm*
    cp "$split"/__wasm_split.js "$site/pkg/" || return 1
    local chunk chunks=()
    for chunk in "$split"/*.wasm; do
        [ "$chunk" = "$split/amigo.wasm" ] && continue
        strip_custom_sections "$chunk" "$site/pkg/${chunk##*/}" || return 1
        chunks+=("$site/pkg/${chunk##*/}")
    done
    cp style/main.css "$site/pkg/amigo.css"
    cp -R public/. "$site/"
    precompress "$site/pkg"/amigo_bg.wasm "$site/pkg"/amigo.js "$site/pkg"/amigo.css "$site/pkg"/__wasm_split.js "${chunks[@]}"
}

# Copies the WASM module IN to OUT without its custom sections: wasm-split-cli gives each chunk the names of its
# functions (half of a chunk; wasm-bindgen drops them from the main module), which the browser does not need.
strip_custom_sections() {
    python3 - "$1" "$2" <<'PYTHON'
import sys

def uleb(data, at):
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at

data = open(sys.argv[1], "rb").read()
out, at = bytearray(data[:8]), 8
while at < len(data):
    start = at
    size, at = uleb(data, at + 1)
    if data[start] != 0:
        out += data[start:at + size]
    at += size
open(sys.argv[2], "wb").write(out)
PYTHON
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
