#!/usr/bin/env bash
# Imports an OCI image archive into the real node's containerd (`make testenv-load`):
#   load.sh DIR ARCHIVE
# Pods then use the image by the name the archive holds, with imagePullPolicy Never or
# IfNotPresent: the node reaches no registry.
set -euo pipefail
dir=${1:?usage: load.sh DIR ARCHIVE}
archive=${2:?usage: load.sh DIR ARCHIVE (IMAGE=target/image/arca.tar)}
socket=$(sed -n 's/^CONTAINERD_SOCKET=//p' "$dir/testenv.env" 2>/dev/null)
[ -n "$socket" ] || { echo "testenv-load: $dir has no real node: start it with NODE=real" >&2; exit 1; }
[ -f "$archive" ] || { echo "testenv-load: no archive $archive (make image writes target/image/arca.tar)" >&2; exit 1; }
ctr --address "$socket" --namespace k8s.io images import "$archive"
