#!/usr/bin/env bash
# `make image`: Arca's container image, built without a daemon or a registry.
#   1. a static `arca` (glibc linked in: -C target-feature=+crt-static), release profile;
#   2. a build context in target/image/context/rootfs: the binary, CA certificates, passwd and
#      group (user 65532 "nonroot"), nsswitch.conf (files before DNS), an empty /tmp;
#   3. buildah (vfs storage under target/image/storage, chroot isolation: no daemon, no
#      privileges beyond root's) builds deploy/image/Containerfile FROM scratch;
#   4. the image is written as an OCI archive to target/image/arca.tar.
# The last line printed is the image reference the archive holds (arca install's default).
# IMAGE=ref overrides the reference; ARCA_IMAGE_PROFILE=release|dev chooses the cargo profile.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
log() { echo "image: $*" >&2; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
ref=${IMAGE:-ghcr.io/arca-dev/arca:$version}
profile=${ARCA_IMAGE_PROFILE:-release}
triple=$(rustc -vV | sed -n 's/^host: //p')

for tool in buildah cargo; do
  command -v "$tool" >/dev/null || {
    echo "image: '$tool' is required: apt-get install buildah (Debian's package; no daemon needed)" >&2
    exit 1
  }
done
[ -f /etc/ssl/certs/ca-certificates.crt ] || {
  echo "image: /etc/ssl/certs/ca-certificates.crt is missing: apt-get install ca-certificates" >&2
  exit 1
}

log "building a static arca ($profile, $triple)"
# --target keeps build scripts and proc-macros dynamic (crt-static applies to the target only).
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build -q --profile "$profile" --target "$triple" -p arca --bin arca
dir=$profile; [ "$profile" = dev ] && dir=debug
binary="target/$triple/$dir/arca"
if readelf -d "$binary" | grep -q NEEDED; then
  echo "image: $binary is not static (it needs shared libraries): the image has none to give it" >&2
  exit 1
fi

out=target/image
context=$out/context
rm -rf "$context"
mkdir -p "$context/rootfs/usr/bin" "$context/rootfs/etc/ssl/certs" "$context/rootfs/tmp"
cp deploy/image/Containerfile "$context/Containerfile"
install -m 0755 "$binary" "$context/rootfs/usr/bin/arca"
strip "$context/rootfs/usr/bin/arca" 2>/dev/null || true
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$context/rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  > "$context/rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$context/rootfs/etc/group"
# The hosts file first: a store named in the pod's /etc/hosts (hostAliases, localhost)
# resolves without a DNS server.
printf 'hosts: files dns\n' > "$context/rootfs/etc/nsswitch.conf"
chmod 1777 "$context/rootfs/tmp"

log "buildah build $ref"
storage=$out/storage
mkdir -p "$storage/root" "$storage/run"
bh() { buildah --storage-driver vfs --root "$root/$storage/root" --runroot "$root/$storage/run" "$@"; }
bh build --quiet --isolation chroot --layers=false --format oci -f "$context/Containerfile" -t "$ref" "$context" >/dev/null
rm -f "$out/arca.tar"
bh push --quiet "$ref" "oci-archive:$root/$out/arca.tar:$ref" >/dev/null
bh rmi --all >/dev/null 2>&1 || true
log "wrote $out/arca.tar ($(du -h "$out/arca.tar" | cut -f1))"
echo "$ref"
