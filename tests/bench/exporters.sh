#!/bin/bash
# exporters.sh: time kiln's exporters and print both goals' ratios in one run.
#   - SIF of the debian base: `kiln push IMAGE sif:` vs what Apptainer's route costs on the same
#     rootfs: `mksquashfs ROOTFS x.sqfs -comp gzip -noappend` + `siftool new` + `siftool add`
#     (goal: kiln <= 0.7x);
#   - oci-archive export from a warm page cache, in MB/s (goal >= 1000), for the debian image and
#     for an image with one 1 GiB incompressible layer.
# Each side runs RUNS times, alternating, and the fastest run counts (the machine may be shared).
#
#   KILN=path/to/kiln   (default: target/release/kiln or $CARGO_TARGET_DIR/release/kiln, else the
#                        debug one, with a warning)
#   LAYOUT=oci-dir      (default: the newest cached debian layout of the test harness;
#                        run `cargo test -p kiln-tests --test harness` once to make it)
#   BIG_MB=1024         (size of the incompressible layer; 0 skips it)
#   RUNS=3              (runs of each measurement)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${KILN_TEST_CACHE:-/var/tmp/kiln-test-cache}
BIG_MB=${BIG_MB:-1024}
RUNS=${RUNS:-3}
KILN=${KILN:-}
if [ -z "$KILN" ]; then
  T=${CARGO_TARGET_DIR:-$ROOT/target}
  for k in "$ROOT/target/release/kiln" "$T/release/kiln" "$ROOT/target/debug/kiln" "$T/debug/kiln"; do
    [ -x "$k" ] && { KILN=$k; break; }
  done
fi
[ -x "${KILN:-}" ] || { echo "kiln binary not found: build it or set KILN=" >&2; exit 2; }
case "$KILN" in *debug*) echo "note: $KILN is a debug build; numbers are pessimistic" >&2 ;; esac
if [ -z "${LAYOUT:-}" ]; then
  LAYOUT=$(ls -d "$CACHE"/debian-bookworm-oci-* 2>/dev/null | grep -v '\.lock$' | sort | tail -1 || true)
fi
[ -f "${LAYOUT:-}/index.json" ] || { echo "no OCI layout: set LAYOUT= or run the harness tests once" >&2; exit 2; }
REF=$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"] // "latest"' "$LAYOUT/index.json")

WORK=$(mktemp -d /tmp/kiln-bench-export.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
K() { "$KILN" --root "$WORK/store" "$@"; }
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }
least() { python3 -c "import sys; print(min(float(a) for a in sys.argv[1:]))" "$@"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
mbps() { python3 -c "import sys; print(f'{float(sys.argv[1]) / 1e6 / float(sys.argv[2]):.0f}')" "$1" "$2"; }

K pull -q "oci:$LAYOUT:$REF" >/dev/null
IMG=$(K images -q | head -1)

# --- SIF ---------------------------------------------------------------------------------------
umoci unpack --rootless --image "$LAYOUT:$REF" "$WORK/bundle" >/dev/null 2>&1
sync
kiln_runs=() ref_runs=()
for _ in $(seq "$RUNS"); do
  rm -f "$WORK/kiln.sif"
  t0=$(now); K push -q "$IMG" "sif:$WORK/kiln.sif" >/dev/null; t1=$(now)
  kiln_runs+=("$(secs "$t0" "$t1")")
  rm -f "$WORK/ref.sqfs" "$WORK/ref.sif"
  t0=$(now)
  mksquashfs "$WORK/bundle/rootfs" "$WORK/ref.sqfs" -comp gzip -noappend -no-progress -quiet >/dev/null
  siftool new "$WORK/ref.sif" >/dev/null
  siftool add --datatype 4 --partfs 1 --parttype 2 --partarch 2 "$WORK/ref.sif" "$WORK/ref.sqfs" >/dev/null
  t1=$(now)
  ref_runs+=("$(secs "$t0" "$t1")")
done
kiln_sif=$(least "${kiln_runs[@]}")
ref_sif=$(least "${ref_runs[@]}")
sif_mb=$(( $(stat -c %s "$WORK/kiln.sif") / 1000000 ))
ref_mb=$(( $(stat -c %s "$WORK/ref.sif") / 1000000 ))

# --- oci-archive, warm cache ---------------------------------------------------------------------
archive_rate() { # IMAGE → MB/s of the fastest warm export, and the archive's size in MB
  K push -q "$1" "oci-archive:$WORK/a.tar" >/dev/null
  rm -f "$WORK/a.tar"
  local t0 t1 size runs=()
  for _ in $(seq "$RUNS"); do
    t0=$(now); K push -q "$1" "oci-archive:$WORK/a.tar" >/dev/null; t1=$(now)
    size=$(stat -c %s "$WORK/a.tar"); rm -f "$WORK/a.tar"
    runs+=("$(secs "$t0" "$t1")")
  done
  echo "$(mbps "$size" "$(least "${runs[@]}")") $((size / 1000000))"
}
read -r deb_rate deb_mb < <(archive_rate "$IMG")
big_rate=""
if [ "$BIG_MB" -gt 0 ]; then
  mkdir -p "$WORK/big"
  head -c "$((BIG_MB * 1048576))" /dev/urandom > "$WORK/big/random.bin"
  printf 'FROM scratch\nCOPY random.bin /random.bin\n' > "$WORK/big/Containerfile"
  K build -q -t localhost/big:1 -f "$WORK/big/Containerfile" "$WORK/big" >/dev/null
  rm -f "$WORK/big/random.bin"
  read -r big_rate big_mb < <(archive_rate localhost/big:1)
fi

echo "kiln: $KILN (fastest of $RUNS runs each)"
printf '%-48s %10s %10s %7s %s\n' "measurement" "kiln" "ref/goal" "ratio" "goal"
printf '%-48s %9ss %9ss %7s %s\n' "SIF of debian, kiln vs mksquashfs+siftool" "$kiln_sif" "$ref_sif" "$(ratio "$kiln_sif" "$ref_sif")" "<= 0.70"
printf '%-48s %10s %10s\n' "  (SIF sizes, MB)" "$sif_mb" "$ref_mb"
printf '%-48s %6s MB/s %5s MB/s %7s %s\n' "oci-archive export, warm, debian ($deb_mb MB)" "$deb_rate" 1000 "$(ratio "$deb_rate" 1000)" ">= 1.00"
if [ -n "$big_rate" ]; then
  printf '%-48s %6s MB/s %5s MB/s %7s %s\n' "oci-archive export, warm, 1 random layer ($big_mb MB)" "$big_rate" 1000 "$(ratio "$big_rate" 1000)" ">= 1.00"
else
  echo "oci-archive export, warm, 1 random layer: skipped (BIG_MB=0)"
fi
