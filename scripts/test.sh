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

log "test services and build dependencies"
# The tests start their own processes of these, on free loopback ports and pseudo-terminals
# they create: Mosquitto (MQTT broker), socat (serial port pairs), PostgreSQL (the alert
# store's test runs a cluster of its own) and tansu (a Kafka-protocol broker). The dashboard's
# browser test (tests/browser.rs) drives a headless Chromium through chromedriver. librdkafka is
# built from source by the rdkafka crate: it needs a C toolchain, make, perl, pkg-config and the
# OpenSSL headers. Install what is missing.
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v socat >/dev/null 2>&1 || need+=(socat)
# PostgreSQL's server programs, for the alert store's PostgreSQL test (it runs its own cluster).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v make >/dev/null 2>&1 || need+=(make)
command -v perl >/dev/null 2>&1 || need+=(perl)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || need+=(libssl-dev)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if [ "${#need[@]}" -gt 0 ]; then
    echo "installing: ${need[*]}"
    if command -v apt-get >/dev/null 2>&1; then
        sudo_cmd=""
        [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
        $sudo_cmd apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}"
    else
        echo "please install: ${need[*]} (the MQTT, serial and browser tests need them)" >&2
        exit 1
    fi
fi
export PATH="$PATH:/usr/sbin:$HOME/.cargo/bin"
# tansu: a Kafka-compatible broker from crates.io. Its default features have no storage
# engine; this build takes ~12 minutes once and is kept in ~/.cargo/bin.
if ! command -v tansu >/dev/null 2>&1; then
    echo "installing tansu (once, ~12 minutes)"
    cargo install tansu --locked --features dynostore,postgres
fi
tansu --version 2>/dev/null || command -v tansu
mosquitto -h 2>/dev/null | head -1 || true
socat -V | head -2 | tail -1

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
