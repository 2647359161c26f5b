#!/usr/bin/env bash
# Builds the Debian package of punctual and prints the path of the .deb.
#
# The package settings are [package.metadata.deb] in Cargo.toml. cargo-deb cannot
# run the binary it packages, so this script builds it first, has it write its man
# page and shell completions to where those settings expect them, and then runs
# `cargo deb --no-build`. Network use: crates.io only (cargo-deb and the crates).
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb: installing cargo-deb" >&2
    cargo install cargo-deb --locked
fi

cargo build --release --locked --bin punctual

# Cargo.toml names the generated files as target/release/..., which cargo-deb maps
# to the real target directory (CARGO_TARGET_DIR or the build.target-dir setting).
target_dir=$(cargo metadata --locked --no-deps --format-version 1 |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
if [ -z "$target_dir" ]; then
    echo "build-deb: cannot find the target directory in cargo metadata" >&2
    exit 1
fi
binary="$target_dir/release/punctual"
generated="$target_dir/release/packaging"
rm -rf "$generated"
mkdir -p "$generated/completions"

# generate FILE ARGS...: writes the output of `punctual ARGS...` to FILE, and stops
# with a clear message when the binary does not have that subcommand.
generate() {
    local file=$1
    shift
    if ! "$binary" "$@" >"$file" || [ ! -s "$file" ]; then
        echo "build-deb: \`punctual $*\` failed or printed nothing; the package needs the" \
            "man and completions subcommands, which this build of punctual lacks" >&2
        exit 1
    fi
}
generate "$generated/punctual.1" man
gzip -9 -n "$generated/punctual.1"
generate "$generated/completions/punctual.bash" completions bash
generate "$generated/completions/_punctual" completions zsh
generate "$generated/completions/punctual.fish" completions fish

# cargo deb prints the path of the package it wrote as its last line.
deb=$(cargo deb --no-build --locked | tail -n 1)
echo "build-deb: $deb"
