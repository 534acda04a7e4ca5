#!/bin/bash
# run-steps.sh: kiln vs `buildah bud --isolation chroot --layers` on the same machine, one run:
#   - 20 consecutive `RUN echo N > /fN` on the busybox base, nothing cached
#     (goal: kiln <= 0.2x buildah and <= 20 ms per step);
#   - a RUN writing BIG_MB of incompressible data: whole build, and kiln's own commit time for
#     that step (goal: <= 0.5x buildah), with kiln's peak RSS (goal: < 150 MB).
#
#   KILN=path/to/kiln   (default: target/release/kiln, else target/debug/kiln)
#   LAYOUT=oci-dir      (default: the cached busybox layout of the test harness;
#                        run `cargo test -p kiln-tests --test harness` once to make it)
#   BIG_MB=1024         (0 skips the big layer)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${KILN_TEST_CACHE:-/var/tmp/kiln-test-cache}
BIG_MB=${BIG_MB:-1024}
KILN=${KILN:-}
if [ -z "$KILN" ]; then
  for k in "$ROOT/target/release/kiln" "$ROOT/target/debug/kiln"; do [ -x "$k" ] && { KILN=$k; break; }; done
fi
[ -x "${KILN:-}" ] || { echo "kiln binary not found: build it or set KILN=" >&2; exit 2; }
case "$KILN" in *debug*) echo "note: $KILN is a debug build; numbers are pessimistic" >&2 ;; esac
if [ -z "${LAYOUT:-}" ]; then
  LAYOUT=$(ls -d "$CACHE"/busybox-oci-* 2>/dev/null | grep -v '\.lock$' | sort | tail -1 || true)
fi
[ -f "${LAYOUT:-}/index.json" ] || { echo "no busybox OCI layout: set LAYOUT= or run the harness tests once" >&2; exit 2; }

WORK=$(mktemp -d /tmp/kiln-bench-run.XXXXXX)
B() { buildah --root "$WORK/b" --runroot "$WORK/b.run" --storage-driver overlay "$@"; }
cleanup() { B rm -a >/dev/null 2>&1 || true; B rmi -af >/dev/null 2>&1 || true; rm -rf "$WORK" 2>/dev/null || true; }
trap cleanup EXIT
K() { "$KILN" --root "$WORK/k" "$@"; }
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }

# The base in both stores (not timed).
B pull -q "oci:$LAYOUT:latest" >/dev/null
B tag "$(B images -q | head -1)" localhost/bench-base:latest
K pull -q "oci:$LAYOUT:latest" >/dev/null
K tag "$(K images -q | head -1)" localhost/bench-base:latest

mkdir -p "$WORK/steps"
{ echo "FROM localhost/bench-base:latest"; for i in $(seq 1 20); do echo "RUN echo $i > /f$i"; done; } > "$WORK/steps/Containerfile"
sync
t0=$(now); B bud -q --isolation chroot --layers --pull=never -t steps -f "$WORK/steps/Containerfile" "$WORK/steps" >/dev/null; t1=$(now)
b_steps=$(secs "$t0" "$t1")
sync
t0=$(now); K build -q --layers --pull=never -t steps -f "$WORK/steps/Containerfile" "$WORK/steps" >/dev/null; t1=$(now)
k_steps=$(secs "$t0" "$t1")
per_step=$(python3 -c "import sys; print(f'{float(sys.argv[1]) * 1000 / 20:.1f}')" "$k_steps")

echo "kiln: $KILN"
printf '%-46s %9s %9s %6s\n' "measurement" "kiln" "buildah" "ratio"
printf '%-46s %8ss %8ss %6s\n' "20 x RUN echo N > /fN, cold" "$k_steps" "$b_steps" "$(ratio "$k_steps" "$b_steps")"
echo "kiln per RUN step: $per_step ms"

if [ "$BIG_MB" -gt 0 ]; then
  mkdir -p "$WORK/big"
  printf 'FROM localhost/bench-base:latest\nRUN dd if=/dev/urandom of=/big.bin bs=1048576 count=%d 2>/dev/null\n' "$BIG_MB" > "$WORK/big/Containerfile"
  sync
  t0=$(now); B bud -q --isolation chroot --layers --pull=never -t big -f "$WORK/big/Containerfile" "$WORK/big" >/dev/null; t1=$(now)
  b_big=$(secs "$t0" "$t1")
  sync
  t0=$(now)
  /usr/bin/time -v "$KILN" --root "$WORK/k" --log-level debug build --layers --pull=never -t big \
    -f "$WORK/big/Containerfile" "$WORK/big" > "$WORK/big.out" 2> "$WORK/big.err"
  t1=$(now)
  k_big=$(secs "$t0" "$t1")
  rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$WORK/big.err")
  commit=$(grep -o 'commit[^0-9]*[0-9.]*m\?s' "$WORK/big.err" | tail -1 || true)
  printf '%-46s %8ss %8ss %6s\n' "RUN writing ${BIG_MB} MiB (whole build)" "$k_big" "$b_big" "$(ratio "$k_big" "$b_big")"
  echo "kiln commit of that step (debug log): ${commit:-n/a}"
  echo "kiln peak RSS: $((rss_kb / 1024)) MB"
fi
