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
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
set +e
cargo test --release --locked --all-targets 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary.
passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$out" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '; [0-9]+ failed' "$out" | awk '{s+=$2} END {print s+0}')
echo
echo "vigil: ${passed} passed, ${failed} failed"
exit "$status"
