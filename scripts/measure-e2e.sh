#!/usr/bin/env bash
# End-to-end latency of live readings, from their arrival at the gateway's MLLP listener to the
# alerter applying their score set (the point where an alert leaves), measured twice:
#   1. in one process (`vigil run`, in-process bus);
#   2. across processes (`vigil gateway`, `vigil scorer` ×N, `vigil alerter`) through a local
#      tansu broker (memory storage).
# The load is `vigil loadgen mllp` (PCD-01 reports, 13 OBX each). Latencies come from the
# `vigil_reading_latency_seconds` histograms (path=score at the scorer, path=alerter at the
# alerter): p50/p99 are interpolated within buckets as Prometheus' histogram_quantile does, and
# "max" is the upper bound of the highest non-empty bucket.
#
# Usage: scripts/measure-e2e.sh [CONNECTIONS] [RATE msgs/s] [DURATION s] [SCORERS]
# Needs target/release/vigil (cargo build --release) and tansu on PATH (scripts/test.sh
# installs it). Everything runs on loopback ports chosen here; nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."

conns=${1:-8}
rate=${2:-1000}
duration=${3:-20}
scorers=${4:-1}
vigil=target/release/vigil
export PATH="$PATH:$HOME/.cargo/bin"
[ -x "$vigil" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v tansu >/dev/null || { echo "tansu is not installed (scripts/test.sh installs it)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 300); do
        (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    exit 1
}

# Quantiles of one path of vigil_reading_latency_seconds from a /metrics scrape.
quantiles() {
    python3 - "$1" "$2" <<'EOF'
import re, sys
text, path = open(sys.argv[1]).read(), sys.argv[2]
b = []
for m in re.finditer(r'^vigil_reading_latency_seconds_bucket\{([^}]*)\} (\d+)$', text, re.M):
    labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
    if labels.get("path") == path:
        le = labels["le"]
        b.append((float("inf") if le == "+Inf" else float(le), int(m.group(2))))
b.sort()
total = b[-1][1] if b else 0
if total == 0:
    print(f"{path}: no readings measured"); sys.exit(0)
def q(p):
    rank, lo, prev = p * total, 0.0, 0
    for le, c in b:
        if c >= rank:
            if le == float('inf'):
                return lo
            return lo + (le - lo) * (rank - prev) / max(c - prev, 1)
        lo, prev = le, c
    return lo
mx = next(le for le, c in b if c == total)
print(f"{path}: {total} score sets, p50 {q(0.5)*1000:.2f} ms, p99 {q(0.99)*1000:.2f} ms, max <= {mx*1000:.1f} ms")
EOF
}

loadgen() {
    "$vigil" loadgen mllp --target "127.0.0.1:$1" --connections "$conns" --rate "$rate" --duration "$duration"
}

echo "== in one process (vigil run, in-process bus): $conns connections, $rate msgs/s, $duration s"
mllp=$(port); http=$(port)
cat >"$work/run.toml" <<EOF
[http]
listen = "127.0.0.1:$http"
[storage]
dir = "$work/run-data"
[[source]]
kind = "mllp"
name = "hl7-in"
listen = "127.0.0.1:$mllp"
EOF
"$vigil" run --config "$work/run.toml" >"$work/run.log" 2>&1 &
pids+=($!)
wait_port "$mllp"
loadgen "$mllp"
sleep 1
curl -fsS "http://127.0.0.1:$http/metrics" >"$work/run.metrics"
quantiles "$work/run.metrics" score
quantiles "$work/run.metrics" alerter
kill -TERM "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

echo
echo "== across processes through tansu: gateway, $scorers scorer(s), alerter"
kport=$(port)
tansu broker --listener-url "tcp://127.0.0.1:$kport" --advertised-listener-url "tcp://127.0.0.1:$kport" \
    --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 &
pids+=($!)
wait_port "$kport"
gw=$(port); ghttp=$(port); ahttp=$(port)
cat >"$work/gateway.toml" <<EOF
[http]
listen = "127.0.0.1:$ghttp"
[storage]
dir = "$work/gw-data"
[kafka]
brokers = "127.0.0.1:$kport"
partitions = 8
[[source]]
kind = "mllp"
name = "hl7-in"
listen = "127.0.0.1:$gw"
EOF
cat >"$work/alerter.toml" <<EOF
[http]
listen = "127.0.0.1:$ahttp"
[storage]
dir = "$work/al-data"
[kafka]
brokers = "127.0.0.1:$kport"
EOF
shttp=()
for i in $(seq 1 "$scorers"); do
    p=$(port); shttp+=("$p")
    cat >"$work/scorer$i.toml" <<EOF
[http]
listen = "127.0.0.1:$p"
[storage]
dir = "$work/sc$i-data"
[kafka]
brokers = "127.0.0.1:$kport"
EOF
done
"$vigil" alerter --config "$work/alerter.toml" >"$work/alerter.log" 2>&1 &
pids+=($!)
for i in $(seq 1 "$scorers"); do
    "$vigil" scorer --config "$work/scorer$i.toml" >"$work/scorer$i.log" 2>&1 &
    pids+=($!)
done
"$vigil" gateway --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
pids+=($!)
wait_port "$gw"
wait_port "$ahttp"
for p in "${shttp[@]}"; do wait_port "$p"; done
# Let the consumer groups settle before the clock starts.
sleep 5
loadgen "$gw"
sleep 3
curl -fsS "http://127.0.0.1:$ahttp/metrics" >"$work/alerter.metrics"
for i in $(seq 1 "$scorers"); do
    curl -fsS "http://127.0.0.1:${shttp[$((i-1))]}/metrics" >"$work/scorer$i.metrics"
    echo -n "scorer $i "; quantiles "$work/scorer$i.metrics" score
done
quantiles "$work/alerter.metrics" alerter
