#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need, then the format check,
# clippy with warnings denied, and every test (unit, integration, golden replay).
#
# Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

log "toolchain"
if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is not installed: install Rust (https://rustup.rs) first" >&2
    exit 1
fi
cargo --version
# rustfmt and clippy come with rustup's default profile; add them where a minimal one is used.
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component"
    fi
done

# The tests drive everything over real loopback sockets and files they create themselves;
# no external service is needed by the current suite.

log "format"
cargo fmt --all -- --check

log "clippy (warnings denied)"
cargo clippy --all-targets --locked -- -D warnings

log "tests"
# Release mode: the golden test replays the 26-hour, 10-bed demo recording twice.
cargo test --release --locked --all-targets
cargo test --release --locked --doc
