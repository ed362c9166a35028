#!/usr/bin/env bash
# Static checks of the deployment recipes, with whatever tools this machine has; a missing tool
# is reported and skipped. Run from anywhere: deploy/check.sh [path/to/vigil]
#   vigil validate        every shipped config (state paths mapped into a scratch directory)
#   systemd-analyze       verify the units in a scratch root (needs the distribution's units)
#   hadolint              the Containerfile
#   docker compose        `config` renders compose.yaml (no daemon needed)
#   kubectl kustomize     renders deploy/kubernetes; kubernetes-validate checks the schemas
#   python3 + PyYAML      every YAML file parses
set -u
cd "$(dirname "$0")/.."
root=$PWD
vigil=${1:-target/debug/vigil}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=0
skip() { echo "skip: $*"; }
fail() { echo "FAIL: $*"; failed=1; }

if [ -x "$vigil" ]; then
  mkdir -p "$scratch/cfg" "$scratch/var/lib/vigil/alerter"
  for f in deploy/systemd/*.toml deploy/compose/*.toml deploy/kubernetes/config/*.toml; do
    out="$scratch/cfg/$(echo "$f" | tr / _)"
    sed -e "s|/var/lib/vigil|$scratch/var/lib/vigil|g" \
        -e "s|/usr/share/vigil/replay-data|$root/replay-data|g" "$f" > "$out"
    "$vigil" validate --config "$out" > /dev/null || fail "vigil validate $f"
  done
  echo "vigil validate: done"
else
  skip "vigil validate (no binary at $vigil; cargo build first)"
fi

if command -v systemd-analyze > /dev/null && [ -d /lib/systemd/system ]; then
  sroot="$scratch/sroot"
  mkdir -p "$sroot/usr/local/bin" "$sroot/etc/systemd/system" "$sroot/usr/lib/systemd/system"
  cp -a /lib/systemd/system/. "$sroot/usr/lib/systemd/system/"
  cp /bin/true "$sroot/usr/local/bin/vigil"
  cp deploy/systemd/*.service "$sroot/etc/systemd/system/"
  out=$(cd "$sroot/etc/systemd/system" && systemd-analyze verify --root="$sroot" \
    vigil.service vigil-gateway.service vigil-alerter.service vigil-scorer@1.service 2>&1)
  if [ -n "$out" ]; then echo "$out"; fail "systemd-analyze verify"; else echo "systemd-analyze verify: clean"; fi
else
  skip "systemd-analyze"
fi

if command -v hadolint > /dev/null; then
  hadolint deploy/container/Containerfile && echo "hadolint: clean" || fail hadolint
else
  skip hadolint
fi

compose=""
if docker compose version > /dev/null 2>&1; then compose="docker compose"
elif command -v docker-compose > /dev/null; then compose="docker-compose"; fi
if [ -n "$compose" ]; then
  $compose -f deploy/compose/compose.yaml config --quiet && echo "compose config: ok" || fail "compose config"
else
  skip "docker compose"
fi

if command -v kubectl > /dev/null; then
  if kubectl kustomize deploy/kubernetes > "$scratch/k8s.yaml"; then
    echo "kustomize: ok"
    if command -v kubernetes-validate > /dev/null; then
      kubernetes-validate --strict --quiet "$scratch/k8s.yaml" && echo "kubernetes-validate: ok" \
        || fail kubernetes-validate
    else
      skip kubernetes-validate
    fi
  else
    fail "kubectl kustomize"
  fi
else
  skip kubectl
fi

if python3 -c 'import yaml' 2> /dev/null; then
  python3 - deploy/compose/compose.yaml deploy/kubernetes/*.yaml <<'PY' || fail "YAML"
import sys, yaml
for f in sys.argv[1:]:
    with open(f) as fh:
        n = len([d for d in yaml.safe_load_all(fh) if d is not None])
    print(f"yaml: {f}: {n} document(s)")
PY
else
  skip "PyYAML (pip install pyyaml)"
fi

exit $failed
