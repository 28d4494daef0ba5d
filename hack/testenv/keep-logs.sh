#!/usr/bin/env bash
# keep-logs.sh NAME...: after a failed e2e run, before the environments are removed, copy
# their logs to target/e2e-logs/NAME and print the errors Arca logged (CI shows only what
# is printed; the environment's folder is gone once `down` has run).
set -u
for name in "$@"; do
  dir="target/testenv/$name/logs"
  [ -d "$dir" ] || continue
  mkdir -p "target/e2e-logs/$name"
  cp -r "$dir/." "target/e2e-logs/$name/" 2>/dev/null
  # The control plane's own logs (kube-apiserver, kube-controller-manager, kube-scheduler,
  # etcd, kwok-controller), kept in kwokctl's folder of the cluster.
  control_plane="target/testenv/$name/kwok/clusters/$name/logs"
  [ -d "$control_plane" ] && cp -r "$control_plane" "target/e2e-logs/$name/control-plane" 2>/dev/null
  echo "== $name: logs kept in target/e2e-logs/$name; Arca's errors and warnings, last 60:"
  grep -h -E ' (ERROR|WARN) ' "$dir"/e2e-operators.log "$dir"/arca-*.log 2>/dev/null | tail -n 60
done
exit 0
