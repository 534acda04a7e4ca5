#!/bin/bash
# build-vs-buildah.sh: time `kiln build` against `buildah bud` (chroot isolation, overlay, --layers)
# on the conformance corpus: cold (empty stores on both sides, base pulls included) and warm (the
# same build again, every step from the cache), and print kiln/buildah ratios (below 1.0: kiln is
# faster) and the time kiln spent in plugin calls (warm build). Warm kiln runs report with
# --progress=json and must mark every step but FROM cached, or the script says so.
#
#   KILN=path/to/kiln   (default: target/release/kiln, else target/debug/kiln)
#   CASES="02-metadata 03-copy-chown-chmod"   (default: every corpus case)
#   RUNS=1              (median of RUNS cold and warm runs per case)
#   CORPUS=dir          (default: /work/shared/conformance/dockerfile)
#   BENCH_DIR=dir       where both tools' stores go (default: /var/tmp)
#   FRESH_FS=1          each tool's store on a new ext4 filesystem (a loop-mounted image in
#                       BENCH_DIR) per case and run: both start from the same clean state, so
#                       neither pays for what the other left behind (see fresh_fs below). Needs
#                       root, mkfs.ext4 and a free loop device; FRESH_FS=0 (or none of those)
#                       puts the stores straight in BENCH_DIR and waits SETTLE before each cold build.
#   SETTLE=65           seconds to wait before each cold build when FRESH_FS=0 (see settle below)
# Base images come from the test harness cache (run `cargo test -p kiln-tests --test conformance`
# once): busybox always, debian and debian-py (08, which also needs HTTPS egress) when cached.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUNS=${RUNS:-1}
CACHE=${KILN_TEST_CACHE:-/var/tmp/kiln-test-cache}
CORPUS=${CORPUS:-/work/shared/conformance/dockerfile}
KILN=${KILN:-}
if [ -z "$KILN" ]; then
  for k in "$ROOT/target/release/kiln" "$ROOT/target/debug/kiln"; do [ -x "$k" ] && { KILN=$k; break; }; done
fi
[ -x "${KILN:-}" ] || { echo "kiln binary not found: build it or set KILN=" >&2; exit 2; }
command -v buildah >/dev/null || { echo "buildah not installed" >&2; exit 2; }
BUSYBOX=$(ls -d "$CACHE"/busybox-oci-* 2>/dev/null | grep -v '\.lock$' | sort | tail -1 || true)
DEBIAN=$(ls -d "$CACHE"/debian-bookworm-oci-* 2>/dev/null | grep -v '\.lock$' | sort | tail -1 || true)
DEBIAN_PY=$(ls -td "$CACHE"/debian-py-oci-* 2>/dev/null | grep -v '\.lock$' | head -1 || true)
[ -f "${BUSYBOX:-}/index.json" ] || { echo "no cached busybox layout in $CACHE: run the conformance tests once" >&2; exit 2; }
if [ -z "${CASES:-}" ]; then
  CASES=$(cd "$CORPUS" && ls -d [0-9]*/ | tr -d / | tr '\n' ' ')
fi

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/kiln-bench-build.XXXXXX")
REG_PID=
cleanup() {
  [ -n "$REG_PID" ] && { kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; }
  # buildah's overlay driver keeps mounts below its root: unmount only ours, deepest first.
  awk -v w="$WORK" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  for img in "$WORK"/*.ext4; do [ -f "$img" ] && losetup -j "$img" | cut -d: -f1 | xargs -r -n1 losetup -d 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
export HOME=$WORK/home XDG_RUNTIME_DIR=$WORK/home/run XDG_CONFIG_HOME=$WORK/home/.config
export REGISTRY_AUTH_FILE=$WORK/auth.json CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf
mkdir -p "$XDG_RUNTIME_DIR" "$XDG_CONFIG_HOME"

port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
REG=127.0.0.1:$port
mkdir -p "$WORK/reg"
cat > "$WORK/reg/config.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/reg/storage
http:
  addr: $REG
YML
# distribution reads REGISTRY_* variables as configuration: keep REGISTRY_AUTH_FILE away from it.
env -u REGISTRY_AUTH_FILE docker-registry serve "$WORK/reg/config.yml" >"$WORK/reg/log" 2>&1 &
REG_PID=$!
up=
for _ in $(seq 1 300); do curl -fs "http://$REG/v2/" >/dev/null 2>&1 && { up=1; break; }; sleep 0.05; done
[ -n "$up" ] || { echo "docker-registry did not start: $(cat "$WORK/reg/log")" >&2; exit 2; }
printf 'unqualified-search-registries = []\n[[registry]]\nlocation = "%s"\ninsecure = true\n' "$REG" > "$CONTAINERS_REGISTRIES_CONF"
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$BUSYBOX:latest" "docker://$REG/busybox:latest"
if [ -f "${DEBIAN:-}/index.json" ]; then
  skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$DEBIAN:bookworm" "docker://$REG/debian:bookworm"
fi
if [ -f "${DEBIAN_PY:-}/index.json" ]; then
  skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$DEBIAN_PY:bookworm" "docker://$REG/debian-py:bookworm"
fi

now() { date +%s.%N; }
# Before a cold build: flush the previous build's writes and wait out ext4's window for freed
# inodes. On ext4 without a journal every inode allocation skips, one candidate at a time, the
# inodes freed in the last 60 s (300 s while their inode table block is dirty, hence the sync),
# so a build that unpacks a rootfs right after many inodes were freed spends most of its time
# in that scan (measured here: unpacking debian 0.3 s on a quiet filesystem, 1.0-2.3 s within a
# minute of freeing a few thousand inodes). Without the wait, each cold build would pay for
# the inodes the other tool's build just freed (buildah's build containers, apt's lists) and
# the ratio would depend on which tool runs second. No store is deleted until the script ends
# for the same reason. SETTLE=2 gives a quick, noisier run.
settle() { sync; sleep "${SETTLE:-65}"; }
# The same effect lasts longer than that window: allocating an inode dirties its inode table
# block, and free inodes in a dirty block count as recently freed for 300 s, so a build that
# follows the other tool's (which freed thousands of build-container inodes) can still pay for
# them after the settle (kiln's FROM of debian: 0.95-1.3 s after buildah's 01 build and 65 s,
# 0.41 s on a new filesystem). With FRESH_FS each timed tool run gets a new journaled ext4
# instead: `fresh_fs DIR` mounts one at DIR, `drop_fs DIR` unmounts and deletes it.
FRESH_FS=${FRESH_FS:-1}
if [ "$FRESH_FS" = 1 ] && { [ "$(id -u)" != 0 ] || ! command -v mkfs.ext4 >/dev/null || ! losetup -f >/dev/null 2>&1; }; then
  echo "FRESH_FS needs root, mkfs.ext4 and a loop device: using SETTLE instead" >&2
  FRESH_FS=0
fi
fresh_fs() {
  [ "$FRESH_FS" = 1 ] || { settle; return; }
  truncate -s 16G "$1.ext4"
  # Inode tables and journal written now, not by a background thread during the build.
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$1.ext4"
  mkdir -p "$1"; mount -o loop "$1.ext4" "$1"
  sync
}
drop_fs() {
  [ "$FRESH_FS" = 1 ] || return 0
  # buildah's overlay driver leaves a private bind mount of its layer directory: deepest first.
  awk -v d="$1" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
  rm -f "$1.ext4"; rmdir "$1"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { echo "$1 $2" | awk '{ if ($2 > 0) printf "%.2f", $1 / $2; else print "-" }'; }

# prepare CASE: copy the context to $WORK/ctx/CASE, point it at $REG, read its flags into ARGS.
prepare() {
  local c=$1 src=$CORPUS/$1
  CTX=$WORK/ctx/$c
  rm -rf "$CTX"; mkdir -p "$CTX"; cp -a "$src/." "$CTX/"
  sed -i "s/127\.0\.0\.1:5000/$REG/g" "$CTX/Dockerfile"
  ARGS=()
  if [ -f "$CTX/bud.args" ]; then
    sed -i "s/127\.0\.0\.1:5000/$REG/g" "$CTX/bud.args"
    while IFS= read -r l; do [ -n "$l" ] && ARGS+=("${l//@CASE@/$CTX}"); done < "$CTX/bud.args"
  fi
}

buildah_in() { buildah --root "$1/root" --runroot "$1/run" --storage-driver overlay "${@:2}"; }
buildah_bud() { buildah_in "$1" bud --isolation chroot --layers --tls-verify=false -q -t "localhost/bench/$2" -f "$CTX/Dockerfile" "${ARGS[@]}" "$CTX" >"$1.log" 2>&1; }
kiln_build() { "$KILN" --root "$1" build --tls-verify=false --progress=plain -t "localhost/bench/$2" -f "$CTX/Dockerfile" "${ARGS[@]}" "$CTX" >"$1.log" 2>&1; }
# The warm build reports in JSON: its step events say what was cached, its summary the plugin time.
kiln_build_json() { "$KILN" --root "$1" build --tls-verify=false --progress=json -t "localhost/bench/$2" -f "$CTX/Dockerfile" "${ARGS[@]}" "$CTX" >"$1.json" 2>"$1.log"; }

fs_note="stores on a new ext4 per run"; [ "$FRESH_FS" = 1 ] || fs_note="stores in $WORK, ${SETTLE:-65} s settle"
echo "kiln: $KILN   buildah: $(buildah --version | awk '{print $3}')   runs: $RUNS   registry: $REG   $fs_note"
printf '%-22s %9s %9s %6s   %9s %9s %6s %9s   %s\n' case b-cold k-cold ratio b-warm k-warm ratio plugin-ms "kiln warm cache"
for c in $CASES; do
  if grep -q '/debian' "$CORPUS/$c/Dockerfile" && [ ! -f "${DEBIAN:-}/index.json" ]; then
    echo "$c: skipped (no cached debian layout)"; continue
  fi
  if grep -q '/debian-py' "$CORPUS/$c/Dockerfile" && [ ! -f "${DEBIAN_PY:-}/index.json" ]; then
    echo "$c: skipped (no cached debian-py layout: run the conformance test corpus_08 once)"; continue
  fi
  prepare "$c"
  bc_=() kc_=() bw_=() kw_=() pm_=() cache_note=ok
  for i in $(seq 1 "$RUNS"); do
    BF=$WORK/fs-buildah-$c-$i KF=$WORK/fs-kiln-$c-$i B=$WORK/buildah-$c-$i K=$WORK/kiln-$c-$i
    [ "$FRESH_FS" = 1 ] && B=$BF/store K=$KF/store
    # Each timed build starts with the page cache flushed of the previous one's writes.
    fresh_fs "$BF"; t0=$(now); buildah_bud "$B" "$c" || { echo "$c: buildah failed: $(tail -3 "$B.log")" >&2; break; }; t1=$(now)
    bc_+=("$(echo "$t1 - $t0" | bc)")
    sync; t0=$(now); buildah_bud "$B" "$c"; t1=$(now)
    bw_+=("$(echo "$t1 - $t0" | bc)")
    buildah_in "$B" rm --all >/dev/null 2>&1 || true
    drop_fs "$BF"
    fresh_fs "$KF"; t0=$(now); kiln_build "$K" "$c" || { echo "$c: kiln failed: $(tail -3 "$K.log")" >&2; break; }; t1=$(now)
    kc_+=("$(echo "$t1 - $t0" | bc)")
    sync; t0=$(now); kiln_build_json "$K" "$c"; t1=$(now)
    kw_+=("$(echo "$t1 - $t0" | bc)")
    steps=$(jq -s '[.[] | select(.event == "step" and .status == "started" and (.instruction | startswith("FROM ") | not))] | length' "$K.json")
    hits=$(jq -s '[.[] | select(.event == "step" and .status == "cached")] | length' "$K.json")
    pm_+=("$(jq -s '[.[] | select(.event == "summary")][0].plugin_ms' "$K.json")")
    [ "$hits" -eq "$steps" ] || cache_note="MISSES: $hits of $steps steps cached"
    rm -f "$K.log" "$K.json"
    drop_fs "$KF"
  done
  [ ${#kw_[@]} -gt 0 ] && [ ${#bw_[@]} -gt 0 ] || continue
  bc=$(printf '%s\n' "${bc_[@]}" | median) kc=$(printf '%s\n' "${kc_[@]}" | median)
  bw=$(printf '%s\n' "${bw_[@]}" | median) kw=$(printf '%s\n' "${kw_[@]}" | median)
  pm=$(printf '%s\n' "${pm_[@]}" | median)
  printf '%-22s %9.3f %9.3f %6s   %9.3f %9.3f %6s %9.2f   %s\n' "$c" "$bc" "$kc" "$(ratio "$kc" "$bc")" "$bw" "$kw" "$(ratio "$kw" "$bw")" "$pm" "$cache_note"
done
