#!/usr/bin/env bash
# make demo-cluster: the tour as a cluster user takes it. Arca's image is built (make image),
# a local Kubernetes with a real kubelet node starts (make testenv-up NODE=real), the image is
# imported into the node, `arca install --use-node-agent` runs the operator and node agent as
# pods, and a pod's files (written from inside its container) are backed up, the namespace
# deleted, and restored before the pod's own container starts. Needs root (the real node).
# DEMO_KEEP=1 leaves the cluster running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${DEMO_NAME:-demo-cluster}
dir="$PWD/target/testenv/$name"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. building Arca's image (static binary, FROM scratch, buildah; no daemon, no registry)"
mkdir -p target/image
image=$(bash hack/image/build.sh | tail -n 1)
echo "$image in target/image/arca.tar"
cargo build -q -p arca -p arca-testenv
arca="$PWD/target/debug/arca"
if [ ! -f "$dir/kubeconfig" ]; then
  step "2. starting a local Kubernetes 1.34 with a real kubelet node (containerd, runc) and S3"
  target/debug/arca-testenv up --name "$name" --node real
fi
cleanup() {
  if [ "${DEMO_KEEP:-0}" != 1 ]; then
    target/debug/arca-testenv down --name "$name" >/dev/null
  else
    echo "cluster kept: export KUBECONFIG=$dir/kubeconfig; stop it with make testenv-down NAME=$name"
  fi
}
trap cleanup EXIT
bin=$(sed -n 's/^ARCA_TESTENV_BIN=//p' "$dir/testenv.env")
env_of() { sed -n "s/^$1=//p" "$dir/testenv.env" "$dir/s3.env" | head -n 1; }
k() { "$bin/kubectl" --kubeconfig="$dir/kubeconfig" "$@"; }
a() { "$arca" --kubeconfig="$dir/kubeconfig" "$@"; }
k get nodes -o wide
bash hack/testenv/load.sh "$dir" target/image/arca.tar >/dev/null

step "3. arca install --use-node-agent (the operator and the agent as pods of that image)"
creds="$dir/demo-credentials"
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
  "$(env_of AWS_ACCESS_KEY_ID)" "$(env_of AWS_SECRET_ACCESS_KEY)" > "$creds"
a install --use-node-agent --image "$image" --kubelet-root-dir "$(env_of KUBELET_ROOT_DIR)" \
  --node-selector arca.dev/real-node=true --toleration arca.dev/real-node:NoSchedule \
  --provider aws --bucket "$(env_of ARCA_TEST_BUCKET)" --prefix demo \
  --backup-location-config "region=us-east-1,s3ForcePathStyle=true,s3Url=$(env_of AWS_ENDPOINT_URL_IN_CLUSTER)" \
  --secret-file "$creds"
k -n arca-system rollout status deployment/arca --timeout=180s
k -n arca-system-node-agent rollout status daemonset/arca-node-agent --timeout=180s
k get pods -A -o wide -l app.kubernetes.io/part-of=arca

step "4. a pod on the real node writes its data from inside its container"
test_image=$(env_of TEST_IMAGE)
cat <<YAML | k apply -f -
apiVersion: v1
kind: Namespace
metadata: {name: notes}
---
apiVersion: v1
kind: Pod
metadata:
  name: notes
  namespace: notes
  annotations:
    backup.velero.io/backup-volumes: data
    pre.hook.backup.velero.io/command: '["sh", "-c", "sync"]'
spec:
  nodeSelector: {arca.dev/real-node: "true"}
  tolerations: [{key: arca.dev/real-node, operator: Exists, effect: NoSchedule}]
  containers:
  - name: notes
    image: $test_image
    imagePullPolicy: Never
    command: ["sh", "-c", "[ -f /data/notes ] || date > /data/notes; echo \"at start: \$(cat /data/notes)\"; exec sleep 100000"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, emptyDir: {}}]
YAML
k -n notes wait --for=condition=Ready pod/notes --timeout=120s
k -n notes logs notes

step "5. backup -> namespace deleted -> restore"
a backup create notes-backup --include-namespaces notes --wait
k delete namespace notes --wait=true
a restore create --from-backup notes-backup --wait
k -n notes wait --for=condition=Ready pod/notes --timeout=120s
echo "the restore helper init container:"
k -n notes logs notes -c arca-restore-wait
echo "the pod's own container, at its start:"
k -n notes logs notes -c notes

step "6. arca uninstall (the backups stay in the bucket)"
a uninstall --wait
