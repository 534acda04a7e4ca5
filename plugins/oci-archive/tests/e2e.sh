#!/bin/bash
# e2e.sh KILN [-- GLOBAL-FLAGS...]
# End-to-end checks of the oci-archive exporter plugin through the kiln binary: builds a small
# image with buildah-style verbs (from scratch, add, config, commit), pushes it to
# oci-archive:, oci: and docker-archive:, and reads each result back with skopeo, umoci, podman
# (private vfs storage) and shared/tools/ocitree.py. Exits non-zero on the first failure.
#   KILN          path to the kiln binary
#   GLOBAL-FLAGS  flags put before every kiln verb (for example --root DIR)
# Needs skopeo, umoci, podman, python3, tar. Leaves nothing behind unless KEEP=1.
set -euo pipefail
KILN=${1:?usage: e2e.sh KILN [-- GLOBAL-FLAGS...]}
shift
[ "${1:-}" = "--" ] && shift
GLOBAL=("$@")
OCITREE=${OCITREE:-/work/shared/tools/ocitree.py}
W=$(mktemp -d /tmp/kiln-e2e-ociarchive.XXXXXX)
cleanup() { [ "${KEEP:-0}" = 1 ] && echo "kept $W" || rm -rf "$W"; }
trap cleanup EXIT
if [ ${#GLOBAL[@]} -eq 0 ]; then GLOBAL=(--root "$W/root" --runroot "$W/run"); fi
k() { "$KILN" "${GLOBAL[@]}" "$@"; }
pass() { printf 'ok   %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*" >&2; exit 1; }

# --- a small image: a rootfs tar with a long path, a symlink and an executable ---
R=$W/rootfs
mkdir -p "$R/etc" "$R/usr/local/bin" "$R/opt/$(printf 'd%.0s' {1..60})/$(printf 'e%.0s' {1..60})"
echo hi > "$R/etc/hello"
printf '#!/bin/sh\necho tool\n' > "$R/usr/local/bin/tool"; chmod 755 "$R/usr/local/bin/tool"
ln -s /etc/hello "$R/etc/link"
echo deep > "$R/opt/$(printf 'd%.0s' {1..60})/$(printf 'e%.0s' {1..60})/file"
head -c 3000000 /dev/urandom > "$R/usr/local/bin/blob"
(cd "$R" && tar --sort=name --mtime=@0 --numeric-owner --owner=0 --group=0 -cf "$W/rootfs.tar" .)

c=$(k from scratch)
k add "$c" "$W/rootfs.tar" / >/dev/null
echo second > "$W/second"
k copy "$c" "$W/second" /second >/dev/null
k config --env 'A=<b>&c' --label x=y --cmd '["/usr/local/bin/tool"]' --os linux --arch amd64 "$c"
k commit --quiet --rm --timestamp 0 "$c" localhost/kiln-e2e:v1 >/dev/null
pass "built localhost/kiln-e2e:v1"

# --- oci-archive with an explicit ref ---
k push localhost/kiln-e2e:v1 "oci-archive:$W/a.tar:myimg:v1" >/dev/null
tar tvf "$W/a.tar" > "$W/a.list"
head -2 "$W/a.list" | grep -q ' blobs/$' || fail "oci-archive: first entry is not blobs/"
sed -n 2p "$W/a.list" | grep -q ' blobs/sha256/$' || fail "oci-archive: second entry is not blobs/sha256/"
grep -q ' oci-layout$' "$W/a.list" || fail "oci-archive: no oci-layout"
awk '{print $2}' "$W/a.list" | grep -qv '^root/root$\|^0/0$' && fail "oci-archive: an entry is not owned by 0/0"
tar xOf "$W/a.tar" index.json | python3 -c '
import json,sys
i=json.load(sys.stdin)
a=i["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
assert a=="myimg:v1", a' || fail "oci-archive: index.json ref.name"
skopeo inspect "oci-archive:$W/a.tar:myimg:v1" > "$W/a.inspect" || fail "skopeo inspect oci-archive"
python3 -c '
import json,sys
v=json.load(open(sys.argv[1]))
assert v["Labels"]["x"]=="y", v["Labels"]
assert "A=<b>&c" in v["Env"], v["Env"]' "$W/a.inspect" || fail "oci-archive: config lost"
mkdir "$W/a.dir" && tar xf "$W/a.tar" -C "$W/a.dir"
umoci unpack --rootless --image "$W/a.dir:myimg:v1" "$W/bundle" >/dev/null || fail "umoci unpack"
cmp "$W/bundle/rootfs/usr/local/bin/blob" "$R/usr/local/bin/blob" || fail "umoci: blob content differs"
[ -x "$W/bundle/rootfs/usr/local/bin/tool" ] || fail "umoci: tool lost its mode"
[ "$(readlink "$W/bundle/rootfs/etc/link")" = /etc/hello ] || fail "umoci: symlink"
pass "oci-archive: skopeo inspect, umoci unpack"

# --- default ref: the image's first name ---
k push localhost/kiln-e2e:v1 "oci-archive:$W/b.tar" >/dev/null
tar xOf "$W/b.tar" index.json | grep -q '"org.opencontainers.image.ref.name":"localhost/kiln-e2e:v1"' \
  || fail "oci-archive: default ref is not the image's name"
pass "oci-archive: default ref"

# --- oci: directory ---
k push localhost/kiln-e2e:v1 "oci:$W/layout:v1" >/dev/null
[ -f "$W/layout/oci-layout" ] && [ -f "$W/layout/index.json" ] || fail "oci: layout files missing"
skopeo inspect "oci:$W/layout:v1" >/dev/null || fail "skopeo inspect oci:"
python3 "$OCITREE" diff "$W/a.tar" "$W/layout" >/dev/null || fail "oci: differs from oci-archive"
pass "oci: directory"

# --- docker-archive ---
k push localhost/kiln-e2e:v1 "docker-archive:$W/d.tar:myimg:v1" >/dev/null
tar tf "$W/d.tar" > "$W/d.list"
grep -qx manifest.json "$W/d.list" && grep -qx repositories "$W/d.list" || fail "docker-archive: metadata files"
grep -q '/layer.tar$' "$W/d.list" && grep -q '/VERSION$' "$W/d.list" && grep -q '/json$' "$W/d.list" \
  || fail "docker-archive: legacy layer directories"
# As buildah push: the destination's reference, then the image's own names.
tar xOf "$W/d.tar" manifest.json | grep -q '"RepoTags":\["docker.io/library/myimg:v1","localhost/kiln-e2e:v1"\]' \
  || fail "docker-archive: RepoTags $(tar xOf "$W/d.tar" manifest.json)"
skopeo inspect "docker-archive:$W/d.tar" >/dev/null || fail "skopeo inspect docker-archive"
# skopeo converting our oci-archive writes the very same docker-archive bytes.
skopeo copy --quiet --additional-tag localhost/kiln-e2e:v1 \
  "oci-archive:$W/a.tar:myimg:v1" "docker-archive:$W/d-skopeo.tar:docker.io/library/myimg:v1"
cmp "$W/d.tar" "$W/d-skopeo.tar" || fail "docker-archive differs from skopeo's conversion of the oci-archive"
python3 "$OCITREE" diff "$W/a.tar" "$W/d.tar" >/dev/null || fail "docker-archive: content differs from the oci-archive"
pass "docker-archive: skopeo inspect, identical to skopeo's, same tree"

# --- podman load of both archive kinds ---
P=(podman --root "$W/podman" --runroot "$W/podman-run" --storage-driver vfs)
"${P[@]}" load -i "$W/a.tar" | grep -q 'Loaded image: localhost/myimg:v1' || fail "podman load oci-archive"
"${P[@]}" load -i "$W/d.tar" | grep -q 'Loaded image: docker.io/library/myimg:v1' || fail "podman load docker-archive"
pass "podman load"

# --- a bad reference is refused before anything is written ---
if k push localhost/kiln-e2e:v1 "docker-archive:$W/bad.tar:Upper:Case" 2>"$W/bad.err"; then
  fail "an uppercase docker reference was accepted"
fi
grep -qi lowercase "$W/bad.err" || fail "the error does not say why: $(cat "$W/bad.err")"
pass "bad reference refused"
echo "all oci-archive e2e checks passed"
