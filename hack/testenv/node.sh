#!/usr/bin/env bash
# The real node's processes: containerd, kubelet and kube-proxy (with CSI=1, the CSI driver
# and its sidecars too), started by `arca-testenv up` (NODE=real) inside the node's network
# namespace, in a mount namespace of its own:
#   unshare --mount --propagation slave nsenter --net=/run/netns/<netns> bash node.sh DIR
# Mounts made here never reach the machine (slave propagation); we keep here:
#   - kubelet's writes to machine-wide kernel settings (kernel.panic, vm.overcommit_memory, ...)
#     land in files of the environment instead;
#   - the runtime's fixed folders (/run/containerd, /var/lib/cni, /var/log/containers,
#     /run/netns) are private tmpfs, so nothing is left on the machine and two nodes never meet;
#   - kubelet's root folder (the environment's node/kubelet) is bind-mounted on the slot's
#     short KUBELET_ROOT_DIR.
# Every setting comes from DIR/node/node.env, written by crates/testenv/src/node.rs.
# Pids go to DIR/pids; logs to DIR/logs. `hack/testenv/down.sh` stops it all.
set -euo pipefail
dir=${1:?usage: node.sh DIR}
node=$dir/node
# shellcheck disable=SC1091
. "$node/node.env"

for key in kernel/panic kernel/panic_on_oops vm/overcommit_memory vm/panic_on_oom \
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes; do
  [ -e "/proc/sys/$key" ] || continue
  file=$node/sysctl/${key//\//.}
  cat "/proc/sys/$key" > "$file"
  mount --bind "$file" "/proc/sys/$key"
done
for folder in /run/containerd /var/lib/cni /var/log/containers /run/netns; do
  mkdir -p "$folder"
  mount -t tmpfs -o mode=0755 arca-node "$folder"
done
# kubelet's root: the environment's node/kubelet, seen at a short path of the slot (its
# plugin registration sockets must be under it, and a socket's path ends at 108 bytes).
# Shared (within this namespace only), as kubelet's root is on a node: the volumes mounted
# under it reach containers that mount it with HostToContainer propagation (the node agent).
mount --bind "$KUBELET_DATA_DIR" "$KUBELET_ROOT_DIR"
mount --make-rshared "$KUBELET_ROOT_DIR"
# The node's cgroup in every hierarchy (kubelet's cgroupRoot must exist); a new cpuset
# starts empty, so it takes its parent's CPUs and memory nodes.
for hierarchy in /sys/fs/cgroup/*/; do
  mkdir -p "$hierarchy$CGROUP_ROOT"
  if [ -f "$hierarchy/cpuset.cpus" ]; then
    cat "$hierarchy/cpuset.cpus" > "$hierarchy$CGROUP_ROOT/cpuset.cpus"
    cat "$hierarchy/cpuset.mems" > "$hierarchy$CGROUP_ROOT/cpuset.mems"
  fi
done
# Forwarding between the pods' bridge and the node's link: this namespace's setting only.
sysctl -qw net.ipv4.ip_forward=1

containerd --config "$node/containerd.toml" >>"$dir/logs/containerd.log" 2>&1 &
echo $! > "$dir/pids/containerd.pid"
ctr() { command ctr --address "$CONTAINERD_SOCKET" --namespace k8s.io "$@"; }
for _ in $(seq 300); do
  ctr version >/dev/null 2>&1 && break
  kill -0 "$(cat "$dir/pids/containerd.pid")" 2>/dev/null || { echo "node: containerd exited; see $dir/logs/containerd.log" >&2; exit 1; }
  sleep 0.1
done
for image in "$node"/images/*.tar; do
  [ -f "$image" ] || continue
  ctr images import "$image" >/dev/null
done
touch "$node/images.imported"

"$BIN/kubelet" --config="$node/kubelet.yaml" --kubeconfig="$node/kubeconfig" \
  --root-dir="$KUBELET_ROOT_DIR" --cert-dir="$node/certs" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
  --node-labels="$NODE_LABELS" --v=1 >>"$dir/logs/kubelet.log" 2>&1 &
echo $! > "$dir/pids/kubelet.pid"
"$BIN/kube-proxy" --config="$node/kube-proxy.yaml" --hostname-override="$NODE_NAME" --v=1 \
  >>"$dir/logs/kube-proxy.log" 2>&1 &
echo $! > "$dir/pids/kube-proxy.pid"

# The CSI stack (CSI=1), host processes here rather than pods: the driver must share this
# mount namespace with kubelet and containerd (its bind mounts are the pods' volumes), and
# no image of it or of the sidecars can be fetched. Our driver serves kubelet's plugin
# registration itself (no node-driver-registrar). The sidecars use the node's credentials
# (the cluster's admin certificate: fine for a test cluster). No metrics or health listeners
# (the default), so environments side by side never collide; retries capped at 30 s, not
# 5 min, so a test waiting on a retry does not wait minutes.
if [ "${CSI:-0}" = 1 ]; then
  "$BIN/arca-csi-hostpath" --endpoint="$CSI_SOCKET" --nodeid="$NODE_NAME" --statedir="$CSI_STATE_DIR" \
    --kubelet-registration-dir="$CSI_REGISTRATION_DIR" >>"$dir/logs/csi-hostpath.log" 2>&1 &
  echo $! > "$dir/pids/csi-hostpath.pid"
  # Topology needs no flag: the driver reports VOLUME_ACCESSIBILITY_CONSTRAINTS, and the
  # provisioner gives each volume the selected node's topology (WaitForFirstConsumer).
  "$BIN/csi-provisioner" --csi-address="$CSI_SOCKET" --kubeconfig="$node/kubeconfig" \
    --leader-election=false --extra-create-metadata --timeout=120s --retry-interval-max=30s \
    --v=2 >>"$dir/logs/csi-provisioner.log" 2>&1 &
  echo $! > "$dir/pids/csi-provisioner.pid"
  # Volume group snapshots are off: their CRDs are not installed.
  "$BIN/csi-snapshotter" --csi-address="$CSI_SOCKET" --kubeconfig="$node/kubeconfig" \
    --leader-election=false --feature-gates=CSIVolumeGroupSnapshot=false --timeout=120s \
    --retry-interval-max=30s --v=2 >>"$dir/logs/csi-snapshotter.log" 2>&1 &
  echo $! > "$dir/pids/csi-snapshotter.pid"
  "$BIN/snapshot-controller" --kubeconfig="$node/kubeconfig" --leader-election=false \
    --feature-gates=CSIVolumeGroupSnapshot=false --retry-interval-max=30s --v=2 \
    >>"$dir/logs/snapshot-controller.log" 2>&1 &
  echo $! > "$dir/pids/snapshot-controller.pid"
fi
# Stay: the mount namespace above lives as long as one of its processes does.
wait
