#!/usr/bin/env bash
# Proves an environment's CSI stack by hand, with kubectl only:
#   make testenv-up NAME=x NODE=real CSI=1 && bash hack/testenv/csi-check.sh target/testenv/x
# In a namespace of its own, on the real node: a claim of the StorageClass csi-hostpath that
# a pod writes into; a VolumeSnapshot of it ready to use, its tar in the driver's state; a
# claim provisioned from the snapshot, read by a pod (read-only claim: a write is refused)
# and holding the same files; the pods' bind mounts gone from the node once they are; the
# snapshot's tar gone once the VolumeSnapshot is deleted; a snapshot of a class with
# `arca.dev/test-never-ready: "true"` still not ready after 20 s; the volumes' folders gone
# with the namespace. Exits non-zero at the first thing that does not hold.
set -euo pipefail
dir=$(cd "${1:?usage: csi-check.sh ENV_DIR}" && pwd)
env_value() { sed -n "s/^$1=//p" "$dir/testenv.env"; }
bin=$(env_value ARCA_TESTENV_BIN)
image=$(env_value TEST_IMAGE)
state=$(env_value CSI_STATE_DIR)
[ -n "$state" ] || { echo "csi-check: $dir has no CSI stack (start it with CSI=1)" >&2; exit 1; }
k() { "$bin/kubectl" --kubeconfig="$dir/kubeconfig" "$@"; }
ns=csi-check-$RANDOM
started=$(date +%s)
step() { echo "csi-check: [$(( $(date +%s) - started ))s] $*"; }
fail() { echo "csi-check: FAILED: $*" >&2; exit 1; }
# What the node's mount namespace has mounted (node.sh is its first process).
node_mounts() { nsenter --mount --target "$(cat "$dir/pids/node.pid")" cat /proc/self/mountinfo; }
# Whether a mount of the node's names $1 (grep reads it all: no SIGPIPE under pipefail).
node_has() { node_mounts | grep -c -- "$1" >/dev/null; }
trap 'k delete namespace "$ns" --wait=false >/dev/null 2>&1 || true; k delete volumesnapshotclass "$ns-never" >/dev/null 2>&1 || true' EXIT

claim() { # name [snapshot]
  local source=""
  [ -n "${2:-}" ] && source="  dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: $2}"
  k apply -f - <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $1, namespace: $ns}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: csi-hostpath
  resources: {requests: {storage: 64Mi}}
$source
EOF
}
pod() { # name claim read-only script
  k apply -f - <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: $ns}
spec:
  nodeSelector: {arca.dev/real-node: "true"}
  tolerations: [{key: arca.dev/real-node, operator: Exists, effect: NoSchedule}]
  terminationGracePeriodSeconds: 1
  restartPolicy: Never
  containers:
  - name: main
    image: $image
    imagePullPolicy: Never
    command: [sh, -c, '$4; touch /tmp/ready; exec sleep 100000']
    readinessProbe: {exec: {command: [test, -f, /tmp/ready]}, periodSeconds: 1}
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: $2, readOnly: $3}
EOF
  k wait -n "$ns" --for=condition=Ready "pod/$1" --timeout=120s >/dev/null
}
sums() { k exec -n "$ns" "$1" -- sh -c 'cd /data && find . -type f | sort | xargs sha256sum'; }

k create namespace "$ns" >/dev/null
step "a claim of csi-hostpath, written by a pod on the real node"
claim data
pod writer data false 'mkdir -p /data/deep && head -c 2097152 /dev/urandom > /data/deep/blob && echo hello > /data/note'
written=$(sums writer)
[ "$(echo "$written" | wc -l)" = 2 ] || fail "the writer's files: $written"
volume=$(k get pvc data -n "$ns" -o jsonpath='{.spec.volumeName}')
handle=$(k get pv "$volume" -o jsonpath='{.spec.csi.volumeHandle}')
[ -d "$state/volumes/$handle/deep" ] || fail "no folder $state/volumes/$handle/deep"
affinity=$(k get pv "$volume" -o jsonpath='{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].key}={.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}')
[ "$affinity" = "topology.hostpath.csi.arca.dev/node=real-node" ] || fail "the volume's node affinity: $affinity"
node_has "$volume" || fail "the writer's volume is not mounted in the node's namespace"

step "a VolumeSnapshot of it becomes ready to use"
k apply -f - <<EOF
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: snap, namespace: $ns}
spec:
  volumeSnapshotClassName: csi-hostpath-snapclass
  source: {persistentVolumeClaimName: data}
EOF
k wait -n "$ns" volumesnapshot/snap --for=jsonpath='{.status.readyToUse}'=true --timeout=60s >/dev/null
content=$(k get volumesnapshot snap -n "$ns" -o jsonpath='{.status.boundVolumeSnapshotContentName}')
snapshot=$(k get volumesnapshotcontent "$content" -o jsonpath='{.status.snapshotHandle}')
[ -f "$state/snapshots/$snapshot.tar" ] || fail "no tar $state/snapshots/$snapshot.tar"

step "the writer goes: its bind mount goes from the node"
k delete pod writer -n "$ns" --wait=true >/dev/null
! node_has "$volume" || fail "the writer's volume is still mounted on the node"

step "a claim from the snapshot, read-only in a pod, holds the same files"
claim restored snap
pod reader restored true 'true'
read_back=$(sums reader)
[ "$read_back" = "$written" ] || fail "read back: $read_back; written: $written"
if k exec -n "$ns" reader -- touch /data/new 2>/dev/null; then fail "a write into the read-only claim succeeded"; fi
restored=$(k get pvc restored -n "$ns" -o jsonpath='{.spec.volumeName}')
options=$(node_mounts | awk -v v="$restored" '$5 ~ v "/mount$" { print $6 }')
case "$options" in ro,*|ro) ;; *) fail "the driver's mount of the read-only claim has options '$options'" ;; esac

step "deleting the VolumeSnapshot removes its tar"
k delete volumesnapshot snap -n "$ns" --wait=true >/dev/null
for _ in $(seq 60); do [ -f "$state/snapshots/$snapshot.tar" ] || break; sleep 1; done
[ ! -f "$state/snapshots/$snapshot.tar" ] || fail "$state/snapshots/$snapshot.tar is still there"

step "a snapshot of a class with arca.dev/test-never-ready stays not ready"
k apply -f - <<EOF
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata: {name: $ns-never}
driver: hostpath.csi.arca.dev
deletionPolicy: Delete
parameters: {arca.dev/test-never-ready: "true"}
---
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: stuck, namespace: $ns}
spec:
  volumeSnapshotClassName: $ns-never
  source: {persistentVolumeClaimName: data}
EOF
for _ in $(seq 30); do
  [ -n "$(k get volumesnapshot stuck -n "$ns" -o jsonpath='{.status.boundVolumeSnapshotContentName}')" ] && break
  sleep 1
done
sleep 20
ready=$(k get volumesnapshot stuck -n "$ns" -o jsonpath='{.status.readyToUse}')
[ "$ready" = false ] || fail "the never-ready snapshot's readyToUse: '$ready'"
k delete volumesnapshot stuck -n "$ns" --wait=true --timeout=60s >/dev/null
k delete volumesnapshotclass "$ns-never" >/dev/null

step "the namespace goes, and the volumes' folders with it"
k delete namespace "$ns" --wait=true --timeout=120s >/dev/null
for _ in $(seq 60); do [ -z "$(ls "$state/volumes")" ] && break; sleep 1; done
[ -z "$(ls "$state/volumes")" ] || fail "left in $state/volumes: $(ls "$state/volumes")"
[ -z "$(ls "$state/snapshots")" ] || fail "left in $state/snapshots: $(ls "$state/snapshots")"
! node_has "kubernetes.io~csi" || fail "a CSI mount is left on the node"
trap - EXIT
step "all held"
