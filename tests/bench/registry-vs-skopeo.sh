#!/bin/bash
# registry-vs-skopeo.sh: time `kiln pull` / `kiln push` against `skopeo copy` on a loopback
# docker-registry and print the kiln/skopeo ratios (below 1.0: kiln is faster).
#
#   KILN=path/to/kiln   (default: target/release/kiln, else target/debug/kiln)
#   LAYOUT=oci-dir      (default: the newest cached debian layout from the test harness,
#                        else the busybox one; run `cargo test -p kiln-tests --test harness` once)
#   RUNS=3              (median of RUNS runs per measurement)
#   BIG_MB=1024         (peak RSS with one incompressible layer of this size; 0 skips)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUNS=${RUNS:-3}
CACHE=${KILN_TEST_CACHE:-/var/tmp/kiln-test-cache}
KILN=${KILN:-}
if [ -z "$KILN" ]; then
  for k in "$ROOT/target/release/kiln" "$ROOT/target/debug/kiln"; do [ -x "$k" ] && { KILN=$k; break; }; done
fi
[ -x "${KILN:-}" ] || { echo "kiln binary not found: build it or set KILN=" >&2; exit 2; }
if [ -z "${LAYOUT:-}" ]; then
  LAYOUT=$(ls -d "$CACHE"/debian-bookworm-oci-* 2>/dev/null | grep -v '\.lock$' | sort | tail -1 || true)
  [ -n "$LAYOUT" ] || LAYOUT=$(ls -d "$CACHE"/busybox-oci-* 2>/dev/null | grep -v '\.lock$' | sort | tail -1 || true)
fi
[ -f "${LAYOUT:-}/index.json" ] || { echo "no OCI layout: set LAYOUT= or run the harness tests once" >&2; exit 2; }
REF=$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"] // "latest"' "$LAYOUT/index.json")

WORK=$(mktemp -d /tmp/kiln-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
export CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf
# (not REGISTRY_AUTH_FILE: docker-registry would read it as a configuration override)
export XDG_RUNTIME_DIR=$WORK/run; mkdir -p "$XDG_RUNTIME_DIR"
echo 'unqualified-search-registries = []' > "$CONTAINERS_REGISTRIES_CONF"

# start_registry NAME: a fresh registry; sets REG to 127.0.0.1:PORT
start_registry() {
  local d=$WORK/reg-$1 port
  port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  mkdir -p "$d"
  cat > "$d/config.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $d/storage
http:
  addr: 127.0.0.1:$port
YML
  env $(env | sed -n 's/^\(REGISTRY_[A-Za-z0-9_]*\)=.*/-u \1/p') docker-registry serve "$d/config.yml" >"$d/log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.05; done
  curl -fs "http://127.0.0.1:$port/v2/" >/dev/null || { echo "registry did not start:" >&2; cat "$d/log" >&2; exit 1; }
  REG=127.0.0.1:$port
}

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

start_registry src
SRC=$REG
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$LAYOUT:$REF" "docker://$SRC/bench:latest"
SIZE=$(du -sh "$LAYOUT" | cut -f1)
echo "image: $LAYOUT ($SIZE), kiln: $KILN, runs: $RUNS"

pull_skopeo=() pull_kiln=() push_skopeo=() push_kiln=()
for i in $(seq 1 "$RUNS"); do
  t0=$(now); skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$SRC/bench:latest" "oci:$WORK/sk-$i:x"; t1=$(now)
  pull_skopeo+=("$(echo "$t1 - $t0" | bc)")
  t0=$(now); "$KILN" --root "$WORK/kiln-$i" pull -q --tls-verify=false "$SRC/bench:latest" >/dev/null; t1=$(now)
  pull_kiln+=("$(echo "$t1 - $t0" | bc)")
  start_registry "ps-$i"
  t0=$(now); skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$WORK/sk-$i:x" "docker://$REG/bench:latest"; t1=$(now)
  push_skopeo+=("$(echo "$t1 - $t0" | bc)")
  start_registry "pk-$i"
  t0=$(now); "$KILN" --root "$WORK/kiln-$i" push -q --tls-verify=false "$SRC/bench:latest" "docker://$REG/bench:latest"; t1=$(now)
  push_kiln+=("$(echo "$t1 - $t0" | bc)")
  rm -rf "$WORK/sk-$i"
done

report() {
  local name=$1 k s
  k=$(printf '%s\n' "${@:2:$RUNS}" | median)
  s=$(printf '%s\n' "${@:$((RUNS + 2))}" | median)
  printf '%-5s kiln %6.2fs  skopeo %6.2fs  ratio %.2f\n' "$name" "$k" "$s" "$(echo "$k / $s" | bc -l)"
}
report pull "${pull_kiln[@]}" "${pull_skopeo[@]}"
report push "${push_kiln[@]}" "${push_skopeo[@]}"

# Peak RSS with one incompressible layer of BIG_MB (default 1024; 0 skips): kiln must stream it
# (goal < 150 MB), skopeo shown for comparison.
BIG_MB=${BIG_MB:-1024}
if [ "$BIG_MB" -gt 0 ]; then
  mkdir -p "$WORK/big"
  head -c "$((BIG_MB * 1048576))" /dev/urandom > "$WORK/big/random.bin"
  printf 'FROM scratch\nCOPY random.bin /random.bin\n' > "$WORK/big/Containerfile"
  "$KILN" --root "$WORK/kiln-big" build -q -t localhost/big:1 -f "$WORK/big/Containerfile" "$WORK/big" >/dev/null
  rm -f "$WORK/big/random.bin"
  rss() { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1; }
  start_registry big
  push_rss=$(rss "$KILN" --root "$WORK/kiln-big" push -q --tls-verify=false localhost/big:1 "docker://$REG/big:1")
  pull_rss=$(rss "$KILN" --root "$WORK/kiln-big-pull" pull -q --tls-verify=false "$REG/big:1")
  sk_pull_rss=$(rss skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$REG/big:1" "oci:$WORK/sk-big:x")
  start_registry big2
  sk_push_rss=$(rss skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$WORK/sk-big:x" "docker://$REG/big:1")
  printf 'peak RSS, %d MiB layer: kiln pull %d MB, push %d MB; skopeo pull %d MB, push %d MB\n' "$BIG_MB" \
    $((pull_rss / 1024)) $((push_rss / 1024)) $((sk_pull_rss / 1024)) $((sk_push_rss / 1024))
fi
