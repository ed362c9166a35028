#!/usr/bin/env bash
# vigil against other HL7 v2 libraries, in one run on one corpus (benches/peers/corpus.txt):
# messages per second on one core for each, and how many times faster vigil's
# parse + decode + normalize is. Every peer parses and reads PID-3.1 and every OBX-5.
# Each cell is run in five slices interleaved with the other implementations, and the best
# slice counts (load on a shared machine only ever slows a slice down).
#
#   scripts/bench-peers.sh [SECONDS_PER_CELL]     (default 1)
#   CALLGRIND=1 scripts/bench-peers.sh            also instructions per message (valgrind)
#   CALLGRIND=1 MSG=3 scripts/bench-peers.sh      ... on corpus message 3 instead of 1
#
# The Rust peers live in a standalone Cargo project (benches/peers) so they never enter
# vigil's dependency tree; the Python ones in a venv under target/peers/venv.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-1}"
export CARGO_TARGET_DIR="$PWD/target/peers"
bin="$CARGO_TARGET_DIR/release/vigil-bench-peers"
venv="$CARGO_TARGET_DIR/venv"
dir=benches/peers

echo "== building the Rust harness (release)" >&2
cargo build --quiet --release --manifest-path "$dir/Cargo.toml"
if [ ! -x "$venv/bin/python" ]; then
    echo "== creating $venv with hl7 and hl7apy" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "hl7==0.4.5" "hl7apy==1.3.5"
fi

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
    "load $(cut -d' ' -f1-3 /proc/loadavg); $(rustc --version); $("$venv/bin/python" --version)" >&2
tsv="$(mktemp)"
trap 'rm -f "$tsv"' EXIT
"$bin" "$dir" "$secs" >"$tsv"
"$venv/bin/python" "$dir/peers.py" "$dir" "$secs" >>"$tsv"

# Table: one row per implementation, messages/s per corpus message and over the whole corpus,
# then vigil parse+normalize ÷ this row on the bench message (first column) and on the corpus.
awk -F'\t' '
NR == 1 { ncol = NF; for (i = 1; i <= NF; i++) head[i] = $i; next }
{ rows++; for (i = 1; i <= NF; i++) cell[rows, i] = $i
  if ($1 == "vigil parse+normalize") { ref1 = $2; refc = $NF } }
END {
  printf "%-26s", "messages/s (one core)"
  for (i = 2; i <= ncol; i++) printf " %10s", "m" (i - 1)
  printf " %10s %10s\n", "x(m1)", "x(corpus)"
  for (r = 1; r <= rows; r++) {
    printf "%-26s", cell[r, 1]
    for (i = 2; i <= ncol; i++) printf " %10d", cell[r, i]
    printf " %10.1f %10.1f\n", ref1 / cell[r, 2], refc / cell[r, ncol]
  }
  print ""
  for (i = 2; i < ncol; i++) printf "m%d = %s\n", i - 1, head[i]
  printf "m%d = all of the above, in turn\n", ncol - 1
  print "x(...) = vigil parse+normalize messages/s divided by the row'"'"'s"
}' "$tsv"

if [ "${CALLGRIND:-0}" = 1 ]; then
    echo
    msg="${MSG:-1}"
    echo "instructions per message on m$msg (callgrind; (N=1100 − N=100) / 1000):"
    for impl in "vigil parse" "vigil parse+decode" "vigil parse+normalize" "er7" "hl7-2" \
        "hl7-parser"; do
        counts=()
        for n in 100 1100; do
            counts+=("$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$dir" \
                --only "$impl" --iters "$n" --msg "$msg" 2>&1 |
                sed -n 's/.*Collected : \([0-9]*\).*/\1/p')")
        done
        printf "%-26s %10d\n" "$impl" $(((counts[1] - counts[0]) / 1000))
    done
fi
