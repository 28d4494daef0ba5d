#!/usr/bin/env bash
# Velero's image for the real node, made from the velero binary build.sh built (static, Go
# with CGO off, as Velero's own image has it), into the cache:
#   velero-image.sh  -> prints the archive's path (images/velero-<version>.tar)
# Laid out as Velero's Dockerfile lays it out: the binary at /velero, no entrypoint (the
# Deployment, the node agent and its pod-volume pods name `/velero ...` as their command).
# Named docker.io/velero/velero:v<version>, the image `velero install` writes into the node
# agent's DaemonSet, so what Velero renders runs unchanged with the image imported.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache=$(bash "$here/build.sh" --print-cache)
velero="$cache/bin/velero"
[ -x "$velero" ] || { echo "testenv: $velero is missing: run hack/testenv/build.sh (make testenv-build)" >&2; exit 1; }
out="$cache/images/velero-$VELERO_VERSION.tar"
if [ -f "$out" ] && [ "$out" -nt "$velero" ]; then echo "$out"; exit 0; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$rootfs/tmp" "$rootfs/etc" "$rootfs/home/cnb" "$rootfs/root"
install -m 0755 "$velero" "$rootfs/velero"
chmod 1777 "$rootfs/tmp"
# Velero's base image has user cnb (1002); the node agent runs as root (runAsUser 0).
printf 'root:x:0:0:root:/root:/sbin/nologin\ncnb:x:1002:1000:cnb:/home/cnb:/sbin/nologin\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\ncnb:x:1000:\n' > "$rootfs/etc/group"
bash "$here/oci-archive.sh" "$rootfs" "docker.io/velero/velero:v$VELERO_VERSION" "$out"
echo "$out"
