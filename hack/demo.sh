#!/usr/bin/env bash
# make demo: Arca's main job, end to end, on this machine alone.
#   A local Kubernetes (the test environment: etcd, kube-apiserver, controller-manager,
#   scheduler, kwok), a sample shop, the operator writing to a local directory, then
#   backup -> the namespace deleted -> restore, and a summary.
# DEMO_KEEP=1 leaves the cluster and the operator running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${DEMO_NAME:-demo}
dir="$PWD/target/testenv/$name"
store="$PWD/target/demo-store"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cargo build -q -p arca -p arca-testenv
arca="$PWD/target/debug/arca"
if [ ! -f "$dir/kubeconfig" ]; then
  step "1. starting a local Kubernetes 1.34 and S3 (built once from Go modules, cached)"
  target/debug/arca-testenv up --name "$name"
fi
bin=$(sed -n 's/^ARCA_TESTENV_BIN=//p' "$dir/testenv.env")
k() { "$bin/kubectl" --kubeconfig="$dir/kubeconfig" "$@"; }
server_pid=""
cleanup() {
  if [ "${DEMO_KEEP:-0}" != 1 ]; then
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    target/debug/arca-testenv down --name "$name" >/dev/null
  else
    echo "cluster kept: export KUBECONFIG=$dir/kubeconfig; stop it with make testenv-down NAME=$name"
    [ -n "$server_pid" ] && echo "operator kept running: pid $server_pid (kill $server_pid), log $dir/logs/arca-server.log"
  fi
}
trap cleanup EXIT
echo "cluster: $(k version -o json | sed -n 's/.*"gitVersion": "\(v1[^"]*\)".*/\1/p' | tail -1), node $(k get nodes -o name)"

step "2. installing Arca: CRDs, a namespace, a storage location on a local directory"
"$arca" crd | k apply --server-side -f - >/dev/null
k wait --for=condition=Established crd/backups.arca.dev crd/restores.arca.dev --timeout=60s >/dev/null
k create namespace arca-system --dry-run=client -o yaml | k apply -f - >/dev/null
rm -rf "$store"; mkdir -p "$store"
cat <<YAML | k apply -f - >/dev/null
apiVersion: arca.dev/v1alpha1
kind: BackupStorageLocation
metadata: {name: local, namespace: arca-system}
spec:
  provider: filesystem
  default: true
  objectStorage: {bucket: backups}
  config: {path: "$store"}
YAML
"$arca" server --kubeconfig "$dir/kubeconfig" --namespace arca-system \
  --metrics-bind-address 127.0.0.1:0 --log-format text >"$dir/logs/arca-server.log" 2>&1 &
server_pid=$!
k -n arca-system wait --for=jsonpath='{.status.phase}'=Available bsl/local --timeout=60s >/dev/null
echo "operator running (pid $server_pid, log $dir/logs/arca-server.log); location 'local' is Available at $store"

step "3. the sample application: namespace shop"
k delete namespace shop --ignore-not-found --wait=true >/dev/null
k apply -f hack/demo/shop.yaml >/dev/null
k -n shop rollout status deploy/storefront --timeout=60s >/dev/null
objects() { k -n shop get deploy,sts,svc,cronjob,cm,secret,sa,role,rolebinding,networkpolicy -o name | grep -v kube-root-ca | sort; }
objects >"$dir/before.txt"
echo "$(wc -l <"$dir/before.txt") objects, $(k -n shop get pods --no-headers | wc -l) pods running"

step "4. backup"
k -n arca-system delete backup shop-backup --ignore-not-found >/dev/null
a() { "$arca" --kubeconfig "$dir/kubeconfig" -n arca-system "$@"; }
echo "\$ arca backup create shop-backup --include-namespaces shop --ttl 72h --wait"
a backup create shop-backup --include-namespaces shop --ttl 72h --wait
a backup get shop-backup
echo "in storage:"; (cd "$store" && find backups -type f | sort | sed 's/^/  /')

step "5. disaster: namespace shop deleted"
k delete namespace shop --wait=true --timeout=120s >/dev/null
echo "namespace shop: $(k get ns shop -o name 2>/dev/null || echo gone)"

step "6. restore"
k -n arca-system delete restore shop-restore --ignore-not-found >/dev/null
echo "\$ arca restore create shop-restore --from-backup shop-backup --wait"
a restore create shop-restore --from-backup shop-backup --wait
a restore get shop-restore
k -n shop rollout status deploy/storefront --timeout=60s >/dev/null

step "7. summary"
objects >"$dir/after.txt"
outcomes=$(k -n arca-system get restore shop-restore -o jsonpath='{.status.outcomes}')
echo "backup:  $(k -n arca-system get backup shop-backup -o jsonpath='{.status.progress.itemsBackedUp} items, {.status.archiveBytes} bytes compressed')"
echo "restore: $outcomes"
echo "pods running again: $(k -n shop get pods --no-headers | grep -c Running)"
if diff -u "$dir/before.txt" "$dir/after.txt"; then
  echo "all $(wc -l <"$dir/after.txt") objects of shop are back. Demo OK."
else
  echo "some objects differ (above)"; exit 1
fi
