#!/usr/bin/env bash
# Writes a single-layer OCI image archive (oci-layout, index.json naming the image) from a
# folder, with no registry and no container engine: what `ctr images import` reads.
#   oci-archive.sh ROOTFS_DIR IMAGE_REF OUT.tar [ENTRYPOINT...]
# The layer is an uncompressed tar of ROOTFS_DIR, owned by root, with fixed times, so the
# same folder always gives the same image digest.
set -euo pipefail
rootfs=${1:?usage: oci-archive.sh ROOTFS REF OUT.tar [ENTRYPOINT...]}
ref=${2:?image reference}
out=${3:?output archive}
shift 3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/blobs/sha256"

blob() { # file -> prints digest and size, moves it into blobs/
  local digest size
  digest=$(sha256sum "$1" | cut -d' ' -f1)
  size=$(stat -c %s "$1")
  mv "$1" "$work/blobs/sha256/$digest"
  echo "$digest $size"
}
json_array() { local first=1; printf '['; for x in "$@"; do [ $first = 1 ] || printf ','; first=0; printf '"%s"' "$x"; done; printf ']'; }

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$rootfs" -cf "$work/layer" .
read -r layer_digest layer_size < <(blob "$work/layer")

entrypoint=$(json_array "$@")
printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":%s,"Env":["PATH=/bin:/usr/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$entrypoint" "$layer_digest" > "$work/config"
read -r config_digest config_size < <(blob "$work/config")

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
  "$config_digest" "$config_size" "$layer_digest" "$layer_size" > "$work/manifest"
read -r manifest_digest manifest_size < <(blob "$work/manifest")

printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
  "$manifest_digest" "$manifest_size" "$ref" "${ref##*:}" > "$work/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' > "$work/oci-layout"
mkdir -p "$(dirname "$out")"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work" -cf "$out.tmp" oci-layout index.json blobs
mv "$out.tmp" "$out"
