#!/usr/bin/env bash
# Stops exactly what `arca-testenv up` started in DIR, by pid, and removes DIR.
#   kwokctl's components: by the pids kwokctl recorded (kwokctl delete cluster).
#   versitygw: by DIR/pids/versitygw.pid.
#   the real node (NODE=real): kubelet, kube-proxy and the CSI stack (CSI=1) by pid, the
#   pods' processes by the node's cgroup, containerd and its shims by the node's network
#   namespace; then the namespace, the link, the cgroups and the slot reservation. The node's
#   mounts (the CSI driver's bind mounts included) live in its own mount namespace and go
#   with its last process; any that reached this one are unmounted.
set -uo pipefail
dir=${1:?usage: down.sh DIR}
[ -d "$dir" ] || exit 0
dir=$(cd "$dir" && pwd)
name=$(basename "$dir")
bin=$(sed -n 's/^ARCA_TESTENV_BIN=//p' "$dir/testenv.env" 2>/dev/null)
if [ -z "$bin" ]; then
  here=$(cd "$(dirname "$0")" && pwd)
  bin=$(bash "$here/build.sh" --print-bin)
fi
status=0

stop_pids() { # pid... : TERM, wait up to 5 s, then KILL
  local pid left
  for pid in "$@"; do kill "$pid" 2>/dev/null; done
  for _ in $(seq 50); do
    left=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && left=1; done
    [ $left = 0 ] && return
    sleep 0.1
  done
  for pid in "$@"; do kill -9 "$pid" 2>/dev/null; done
}
pid_of() { [ -f "$1" ] && cat "$1"; }

if [ -f "$dir/node/node.env" ]; then
  # shellcheck disable=SC1091
  . "$dir/node/node.env"
  # kubelet first, so it restarts nothing (and the CSI stack with it, so it acts no more);
  # then every process of the node's pods. (Word splitting wanted: a pid per word.)
  # shellcheck disable=SC2046
  stop_pids $(pid_of "$dir/pids/kubelet.pid") $(pid_of "$dir/pids/kube-proxy.pid") \
    $(for p in csi-provisioner csi-snapshotter snapshot-controller csi-hostpath; do pid_of "$dir/pids/$p.pid"; done)
  cgroup_pids=$(find /sys/fs/cgroup/*/"$CGROUP_ROOT" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
  # shellcheck disable=SC2086
  [ -n "$cgroup_pids" ] && stop_pids $cgroup_pids
  # containerd, its shims and node.sh: everything in the node's network namespace.
  ns_pids=$(ip netns pids "$NETNS" 2>/dev/null)
  # shellcheck disable=SC2086
  [ -n "$ns_pids" ] && stop_pids $ns_pids
  for hierarchy in /sys/fs/cgroup/*/"$CGROUP_ROOT"; do
    [ -d "$hierarchy" ] && find "$hierarchy" -depth -type d -exec rmdir {} + 2>/dev/null
  done
fi
if [ -d "$dir/kwok/clusters/$name" ] && [ -x "$bin/kwokctl" ]; then
  KWOK_WORKDIR="$dir/kwok" PATH="$bin:$PATH" "$bin/kwokctl" delete cluster --name "$name" >/dev/null 2>&1 || status=$?
fi
# Whatever kwokctl did not stop (or when kwokctl is gone), stop from the pid files it keeps.
for pidfile in "$dir"/pids/*.pid "$dir"/kwok/clusters/"$name"/pids/*.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && stop_pids "$pid"
done
slot_dir=""
if [ -f "$dir/node-slot" ]; then
  slot=$(cat "$dir/node-slot")
  slot_dir="${ARCA_TESTENV_SLOTS:-/run/arca-testenv/slots}/$slot"
  ip link del "arcah$slot" 2>/dev/null
  ip netns del "arca-node-$slot" 2>/dev/null
fi
# Nothing of the node's should be mounted here (nor on the slot's kubelet folder); if
# something is, unmount it before removing.
if command -v findmnt >/dev/null; then
  findmnt -rn -o TARGET | grep -F -e "$dir/" ${slot_dir:+-e "$slot_dir/"} | sort -r | while read -r target; do
    umount -l "$target" 2>/dev/null
  done
fi
[ -n "$slot_dir" ] && rm -rf "$slot_dir"
rm -rf "$dir"
exit $status
