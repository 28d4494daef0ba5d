#!/usr/bin/env bash
# make demo: Arca's main job, end to end, on this machine alone.
#   A local Kubernetes (the test environment: etcd, kube-apiserver, controller-manager,
#   scheduler, kwok), a sample shop, the operator writing to a local directory and a node
#   agent, then backup (manifests and a pod's volume files) -> the namespace deleted ->
#   restore, and a summary. kwok runs no kubelet: this script makes the pod volume folders
#   kubelet would (under $dir/kubelet-pods), which the agent reads and writes.
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
agent_pid=""
cleanup() {
  if [ "${DEMO_KEEP:-0}" != 1 ]; then
    [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    target/debug/arca-testenv down --name "$name" >/dev/null
  else
    echo "cluster kept: export KUBECONFIG=$dir/kubeconfig; stop it with make testenv-down NAME=$name"
    [ -n "$server_pid" ] && echo "operator kept running: pid $server_pid (kill $server_pid), log $dir/logs/arca-server.log"
    [ -n "$agent_pid" ] && echo "node agent kept running: pid $agent_pid (kill $agent_pid), log $dir/logs/arca-agent.log"
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
pods_dir="$dir/kubelet-pods"; rm -rf "$pods_dir"; mkdir -p "$pods_dir"
node=$(k get nodes -o jsonpath='{.items[0].metadata.name}')
"$arca" agent --kubeconfig "$dir/kubeconfig" --namespace arca-system --node-name "$node" \
  --host-pods-dir "$pods_dir" --log-format text >"$dir/logs/arca-agent.log" 2>&1 &
agent_pid=$!
echo "node agent running for node $node (pid $agent_pid, log $dir/logs/arca-agent.log)"
# What kubelet does when it mounts pod shop/ledger's emptyDir `books`; prints the folder.
books() {
  local uid=""
  for _ in $(seq 1 400); do
    uid=$(k -n shop get pod ledger -o jsonpath='{.metadata.uid}' 2>/dev/null || true)
    [ -n "$uid" ] && break; sleep 0.3
  done
  mkdir -p "$pods_dir/$uid/volumes/kubernetes.io~empty-dir/books"
  echo "$pods_dir/$uid/volumes/kubernetes.io~empty-dir/books"
}

step "3. the sample application: namespace shop"
k delete namespace shop --ignore-not-found --wait=true >/dev/null
k apply -f hack/demo/shop.yaml >/dev/null
k -n shop rollout status deploy/storefront --timeout=60s >/dev/null
objects() { k -n shop get deploy,sts,svc,cronjob,cm,secret,sa,role,rolebinding,networkpolicy -o name | grep -v kube-root-ca | sort; }
objects >"$dir/before.txt"
ledger=$(books)
for year in 2024 2025 2026; do
  mkdir -p "$ledger/$year"
  for month in 01 02 03 04 05 06 07 08 09 10 11 12; do
    seq 1 2000 | sed "s/^/$year-$month order /" >"$ledger/$year/$month.csv"
  done
done
ln -s 2026/11.csv "$ledger/current.csv"
(cd "$ledger" && find . -type f -o -type l | sort | xargs sha256sum) >"$dir/books-before.txt"
echo "$(wc -l <"$dir/before.txt") objects, $(k -n shop get pods --no-headers | wc -l) pods running, $(du -sh "$ledger" | cut -f1) of ledger files on pod ledger's volume"

step "4. backup"
k -n arca-system delete backup shop-backup --ignore-not-found >/dev/null
a() { "$arca" --kubeconfig "$dir/kubeconfig" -n arca-system "$@"; }
echo "\$ arca backup create shop-backup --include-namespaces shop --ttl 72h --wait"
a backup create shop-backup --include-namespaces shop --ttl 72h --wait
a backup get shop-backup
echo "\$ kubectl get podvolumebackups -n arca-system"; k -n arca-system get podvolumebackups
echo "in storage:"; (cd "$store" && find backups -type f | grep -v '^backups/volumes/' | sort | sed 's/^/  /')
echo "  and the restic-format repository of namespace shop: $(find "$store/backups/volumes/shop" -type f | wc -l) files in backups/volumes/shop/" 

step "5. disaster: namespace shop deleted"
k delete namespace shop --wait=true --timeout=120s >/dev/null
echo "namespace shop: $(k get ns shop -o name 2>/dev/null || echo gone)"

step "6. restore"
k -n arca-system delete restore shop-restore --ignore-not-found >/dev/null
books >"$dir/books-dir.txt" &   # kubelet mounting the recreated pod's volume
kubelet_pid=$!
echo "\$ arca restore create shop-restore --from-backup shop-backup --wait"
a restore create shop-restore --from-backup shop-backup --wait
wait "$kubelet_pid"
a restore get shop-restore
k -n shop rollout status deploy/storefront --timeout=60s >/dev/null

step "7. summary"
objects >"$dir/after.txt"
outcomes=$(k -n arca-system get restore shop-restore -o jsonpath='{.status.outcomes}')
echo "backup:  $(k -n arca-system get backup shop-backup -o jsonpath='{.status.progress.itemsBackedUp} items, {.status.archiveBytes} bytes compressed')"
echo "restore: $outcomes"
echo "pods running again: $(k -n shop get pods --no-headers | grep -c Running)"
(cd "$(cat "$dir/books-dir.txt")" && find . -type f -o -type l | sort | xargs sha256sum) >"$dir/books-after.txt"
echo "ledger volume: $(wc -l <"$dir/books-after.txt") files written into the new pod's volume by the node agent"
if ! diff -u "$dir/books-before.txt" "$dir/books-after.txt"; then
  echo "the ledger files differ (above)"; exit 1
fi
if diff -u "$dir/before.txt" "$dir/after.txt"; then
  echo "all $(wc -l <"$dir/after.txt") objects of shop and every ledger file are back. Demo OK."
else
  echo "some objects differ (above)"; exit 1
fi
