#!/bin/bash
# storage-drivers.sh: kiln's RUN steps with `--storage-driver overlay` vs `--storage-driver vfs`
# (a copy of the stage's filesystem per step), same machine, same run, nothing cached:
#   - 20 consecutive `RUN echo N > /fN` on the busybox base: time per step with each driver;
#   - the same on the debootstrap debian base (a ~10k-file rootfs: the vfs copy's real cost),
#     when its cached layout exists.
# Prints the ratio vfs/overlay. No goal: vfs is the fallback where overlay mounts are refused.
#
#   KILN=path/to/kiln   (default: target/release/kiln, else target/debug/kiln)
#   STEPS=20
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${KILN_TEST_CACHE:-/var/tmp/kiln-test-cache}
STEPS=${STEPS:-20}
KILN=${KILN:-}
if [ -z "$KILN" ]; then
  for k in "$ROOT/target/release/kiln" "$ROOT/target/debug/kiln"; do [ -x "$k" ] && { KILN=$k; break; }; done
fi
[ -x "${KILN:-}" ] || { echo "kiln binary not found: build it or set KILN=" >&2; exit 2; }
case "$KILN" in *debug*) echo "note: $KILN is a debug build; numbers are pessimistic" >&2 ;; esac

WORK=$(mktemp -d /tmp/kiln-bench-drivers.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }
ms_per() { python3 -c "import sys; print(f'{float(sys.argv[1]) * 1000 / float(sys.argv[2]):.1f}')" "$1" "$2"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }

printf '%-34s %12s %12s %7s\n' "base: $STEPS x RUN echo N > /fN" "overlay" "vfs" "vfs/ov"
for base in busybox:latest debian-bookworm:bookworm; do
  name=${base%%:*} tag=${base#*:}
  LAYOUT=$(ls -d "$CACHE"/$name-oci-* 2>/dev/null | grep -v '\.lock$' | sort | tail -1 || true)
  [ -f "${LAYOUT:-}/index.json" ] || { echo "$name: no cached OCI layout, skipped" >&2; continue; }
  mkdir -p "$WORK/ctx-$name"
  { echo "FROM localhost/bench-$name:latest"; for i in $(seq 1 "$STEPS"); do echo "RUN echo $i > /f$i"; done; } > "$WORK/ctx-$name/Containerfile"
  declare -A per=()
  for driver in overlay vfs; do
    K() { "$KILN" --root "$WORK/k-$name-$driver" --storage-driver "$driver" "$@"; }
    K pull -q "oci:$LAYOUT:$tag" >/dev/null
    K tag "$(K images -q | head -1)" "localhost/bench-$name:latest"
    # The base's flattened snapshot is made by a first build (not timed), so that both drivers
    # start from it.
    printf 'FROM localhost/bench-%s:latest\nRUN true\n' "$name" > "$WORK/ctx-$name/Warm"
    K build -q --pull=never -f "$WORK/ctx-$name/Warm" "$WORK/ctx-$name" >/dev/null
    sync
    t0=$(now); K build -q --no-cache --pull=never -t steps -f "$WORK/ctx-$name/Containerfile" "$WORK/ctx-$name" >/dev/null; t1=$(now)
    per[$driver]=$(ms_per "$(secs "$t0" "$t1")" "$STEPS")
  done
  printf '%-34s %9s ms %9s ms %7s\n' "$name (per step)" "${per[overlay]}" "${per[vfs]}" "$(ratio "${per[vfs]}" "${per[overlay]}")"
done
