#!/usr/bin/env bash
# Builds the test environment's components from Go modules into a cache outside the checkout:
#   ${ARCA_TESTENV_CACHE:-~/.cache/arca-testenv}/<versions>/bin
# Skips every component whose binary is already there (kopia: whose stamp file
# bin/.kopia-version names KOPIA_VERSION; velero and velero-plugin-for-aws: whose stamp file
# bin/.velero-version names their versions; the CSI sidecars: bin/.csi-sidecars-version; our
# CSI driver: bin/.arca-csi-hostpath-sources, the sha256 of its sources; none of these is in
# the cache key, so changing them rebuilds them alone).
# Prints the bin folder on stdout last.
#
# Components that share libraries are built in one wrapper module each, so that Go compiles
# a shared package once (Go's build cache reuses a package only when its whole dependency
# tree is the same): Kubernetes, etcd and helm (k8s.io at the Kubernetes release); Velero and
# its AWS plugin; the two CSI sidecars. That is about a quarter less source compiled than one
# module per component (measured with `go list -deps`: 334 MB of Go source instead of 434).
# kwok, versitygw and kopia build alone: their dependencies do not compile at the others'
# versions.
# Kubernetes, etcd, helm, kwok and versitygw build in the foreground (their output on
# stderr); kopia and Velero, and the CSI stack, build meanwhile in two background jobs whose
# output goes to <cache>/logs/<job>.log (quoted here when a job fails). Cold times are in
# docs/testing.md.
# Needs: go (>= 1.26, for external-snapshotter) and the Go module proxy. No binary downloads.
# `build.sh --print-bin` only prints the bin folder; `--print-cache` the cache folder.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

command -v go >/dev/null || { echo "testenv: 'go' is not on PATH. Install Go >= 1.26 (https://go.dev/doc/install or the golang-go package)." >&2; exit 1; }

root=${ARCA_TESTENV_CACHE:-$HOME/.cache/arca-testenv}
key="k8s-$K8S_VERSION.etcd-$ETCD_VERSION.kwok-$KWOK_VERSION.vgw-$VERSITYGW_VERSION.helm-$HELM_VERSION.b$TESTENV_BUILD"
cache="$root/$key"
bin="$cache/bin"
if [ "${1:-}" = "--print-bin" ]; then echo "$bin"; exit 0; fi
if [ "${1:-}" = "--print-cache" ]; then echo "$cache"; exit 0; fi
mkdir -p "$bin" "$cache/src" "$cache/logs"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
log() { echo "testenv: $*" >&2; }

have() { [ -x "$bin/$1" ]; }

# Kubernetes' commands, etcd and helm in one wrapper module: helm and etcd then compile
# against the Kubernetes release's k8s.io modules and shared libraries (grpc, protobuf,
# OpenTelemetry at the highest version any of them asks for).
build_k8s_etcd_helm() {
  if have kube-apiserver && have kube-controller-manager && have kube-scheduler && have kubectl \
    && have kubelet && have kube-proxy && have etcd && have helm; then return; fi
  log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet, kube-proxy v$K8S_VERSION, etcd v$ETCD_VERSION and helm v$HELM_VERSION"
  local d="$cache/src/k8s"; rm -rf "$d"; mkdir -p "$d"; cd "$d"
  go mod init local/k8sbin >/dev/null 2>&1
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging,
  # which the module zip lacks: point each at its published version instead.
  local m
  for m in api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider \
    cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api \
    cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms \
    kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics \
    mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller; do
    go mod edit -replace="k8s.io/$m=k8s.io/$m@v$K8S_STAGING_VERSION"
  done
  local p="k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy helm.sh/helm/v3/cmd/helm"
  local etcd=go.etcd.io/etcd/server/v3
  # shellcheck disable=SC2046
  go get $(for x in $p; do case $x in helm.sh/*) echo "$x@v$HELM_VERSION" ;; *) echo "$x@v$K8S_VERSION" ;; esac; done) \
    "$etcd@v$ETCD_VERSION"
  local minor; minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  local ld="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" pk
  for pk in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pk.gitVersion=v$K8S_VERSION -X $pk.gitMajor=1 -X $pk.gitMinor=$minor -X $pk.gitTreeState=clean"
  done
  # shellcheck disable=SC2086
  go build -trimpath -ldflags "$ld" -o "$bin/" $p
  # etcd's main package is the module's root: built on its own for its name (the packages it
  # shares with the others are compiled already).
  go build -trimpath -ldflags "-s -w" -o "$bin/etcd" "$etcd"
}

build_install() { # name module version
  have "$1" && return
  log "building $1 $3"
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" "$2@$3"
}

# kopia, the volume benchmark's peer. The module proxy refuses its version list, so
# `go install ...@version` fails: a wrapper module asks for the exact version instead.
build_kopia() {
  local stamp="$bin/.kopia-version"
  if have kopia && [ "$(cat "$stamp" 2>/dev/null)" = "$KOPIA_VERSION" ]; then return; fi
  log "building kopia v$KOPIA_VERSION (about 2 min on 2 cores)"
  local d="$cache/src/kopia"; rm -rf "$d"; mkdir -p "$d"; cd "$d"
  go mod init local/kopia >/dev/null 2>&1
  go get "github.com/kopia/kopia@v$KOPIA_VERSION"
  go build -trimpath -ldflags "-s -w -X github.com/kopia/kopia/repo.BuildVersion=v$KOPIA_VERSION" \
    -o "$bin/kopia" github.com/kopia/kopia
  echo "$KOPIA_VERSION" >"$stamp"
}

# Velero and its AWS plugin: the e2e tests run real Velero out of cluster and read what it
# wrote. Velero's go.mod replaces kopia with Velero's fork, and a dependency's replace
# directives do not apply to a consumer: a wrapper module repeats it, and pins a
# k8s.io/cli-runtime the module proxy serves (it refuses v0.33.11 and v0.33.12). The plugin
# is built in the same wrapper (it asks for Velero v1.18.1; it compiles against this one's
# packages, which are then compiled once). It is put in bin/velero-plugins/, the folder given
# to `velero server --plugin-dir` (Velero runs every executable of that folder as a plugin,
# so it cannot be bin/ itself).
build_velero() {
  local stamp="$bin/.velero-version" want="velero-$VELERO_VERSION aws-$VELERO_AWS_PLUGIN_VERSION"
  if have velero && have velero-plugins/velero-plugin-for-aws \
    && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return; fi
  log "building velero v$VELERO_VERSION and velero-plugin-for-aws v$VELERO_AWS_PLUGIN_VERSION"
  local d="$cache/src/velero"; rm -rf "$d"; mkdir -p "$d" "$bin/velero-plugins"
  cd "$d"
  go mod init local/velero >/dev/null 2>&1
  go mod edit -replace="github.com/kopia/kopia=github.com/project-velero/kopia@$VELERO_KOPIA_FORK"
  go mod edit -replace="k8s.io/cli-runtime=k8s.io/cli-runtime@v$VELERO_CLI_RUNTIME"
  local plugin=github.com/vmware-tanzu/velero-plugin-for-aws/velero-plugin-for-aws
  go get "github.com/vmware-tanzu/velero/cmd/velero@v$VELERO_VERSION" "$plugin@v$VELERO_AWS_PLUGIN_VERSION"
  go build -trimpath \
    -ldflags "-s -w -X github.com/vmware-tanzu/velero/pkg/buildinfo.Version=v$VELERO_VERSION" \
    -o "$bin/velero" github.com/vmware-tanzu/velero/cmd/velero
  go build -trimpath -ldflags "-s -w" -o "$bin/velero-plugins/velero-plugin-for-aws" "$plugin"
  echo "$want" >"$stamp"
}

# The CSI sidecars' modules pin every k8s.io module to one release with replace directives,
# and a dependency's replace directives do not apply to a consumer: the wrapper module (the
# current folder) repeats them, read from the module's own go.mod ($1: module@version).
repeat_k8s_replaces() {
  local gomod replaces
  gomod=$(go mod download -json "$1" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
  [ -f "$gomod" ] || { log "no go.mod downloaded for $1"; return 1; }
  replaces=$(sed -n 's#^replace[[:space:]]\{1,\}\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]\{1,\}\(v[^[:space:]]*\)[[:space:]]*$#-replace=\1=\2@\3#p' "$gomod")
  [ -n "$replaces" ] || { log "no k8s.io replace directives in $gomod"; return 1; }
  # shellcheck disable=SC2086
  go mod edit $replaces
}

# external-provisioner's csi-provisioner (creates a volume through the driver for each claim),
# external-snapshotter's snapshot-controller and csi-snapshotter, in one wrapper module, and
# the snapshot CRDs from the snapshotter's client module (copied into <cache>/csi/crds, so
# starting an environment needs no module cache). The snapshotter's go.mod pins every k8s.io
# module to one release with replace directives (the provisioner's to an older one), and a
# dependency's replace directives do not apply to a consumer: the wrapper repeats the
# snapshotter's, so both compile against the same k8s.io modules. Its go.mod also replaces
# the client module with ./client, which a consumer cannot see: the wrapper points it at the
# published client of the same version.
build_csi_sidecars() {
  local vp="v$CSI_PROVISIONER_VERSION" vs="v$CSI_SNAPSHOTTER_VERSION" crds="$cache/csi/crds"
  local stamp="$bin/.csi-sidecars-version" want="provisioner-$vp snapshotter-$vs"
  local kinds="volumesnapshotclasses volumesnapshotcontents volumesnapshots" k
  local missing=0
  for k in $kinds; do [ -f "$crds/snapshot.storage.k8s.io_$k.yaml" ] || missing=1; done
  if have csi-provisioner && have snapshot-controller && have csi-snapshotter && [ $missing = 0 ] \
    && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return; fi
  local prov=github.com/kubernetes-csi/external-provisioner/v6
  local snap=github.com/kubernetes-csi/external-snapshotter/v8
  local client=github.com/kubernetes-csi/external-snapshotter/client/v8
  log "building csi-provisioner $vp, snapshot-controller and csi-snapshotter $vs"
  local d="$cache/src/csi-sidecars"; rm -rf "$d"; mkdir -p "$d"; cd "$d"
  go mod init local/csi-sidecars >/dev/null 2>&1
  repeat_k8s_replaces "$snap@$vs"
  go mod edit -replace="$client=$client@$vs"
  # The commands' packages, not the modules: `go get` of a module alone would not pull a
  # command's dependencies into the wrapper (and `go mod tidy` would drop the requirement).
  go get "$prov/cmd/csi-provisioner@$vp" "$snap/cmd/snapshot-controller@$vs" "$snap/cmd/csi-snapshotter@$vs"
  go build -trimpath -ldflags "-s -w -X main.version=$vp" -o "$bin/csi-provisioner" "$prov/cmd/csi-provisioner"
  go build -trimpath -ldflags "-s -w -X main.version=$vs" -o "$bin/" \
    "$snap/cmd/snapshot-controller" "$snap/cmd/csi-snapshotter"
  local client_dir
  client_dir=$(go mod download -json "$client@$vs" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
  mkdir -p "$crds"
  for k in $kinds; do
    cp "$client_dir/config/crd/snapshot.storage.k8s.io_$k.yaml" "$crds/"
  done
  chmod 0644 "$crds"/*.yaml
  echo "$want" >"$stamp"
}

# Our CSI driver (hack/testenv/csi-hostpath), rebuilt when its sources change.
build_csi_driver() {
  local src="$here/csi-hostpath" stamp="$bin/.arca-csi-hostpath-sources" sum
  sum=$(cd "$src" && find . -maxdepth 1 -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) \
    | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
  if have arca-csi-hostpath && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then return; fi
  log "building arca-csi-hostpath from hack/testenv/csi-hostpath"
  (cd "$src" && go build -trimpath -ldflags "-s -w" -o "$bin/arca-csi-hostpath" .)
  echo "$sum" >"$stamp"
}

# Background jobs: name, then the functions it runs in order, in a subshell whose output goes
# to <cache>/logs/<name>.log. `wait_jobs` waits for all and quotes the log of each that failed.
job_names=() job_pids=() job_logs=()
start_job() {
  local name=$1 log_file="$cache/logs/$1.log"; shift
  ( set -e; started=$(date +%s); for f in "$@"; do "$f"; done
    echo "done in $(( $(date +%s) - started ))s" ) >"$log_file" 2>&1 &
  job_names+=("$name") job_pids+=($!) job_logs+=("$log_file")
}
wait_jobs() {
  local i failed=0
  for i in "${!job_pids[@]}"; do
    if wait "${job_pids[$i]}"; then
      # A job that built something says so (a warm one only prints its "done" line).
      [ "$(wc -l <"${job_logs[$i]}")" -gt 1 ] && log "job ${job_names[$i]}: $(tail -n 1 "${job_logs[$i]}") (log: ${job_logs[$i]})"
    else
      failed=1
      log "${job_names[$i]} failed; the last 40 lines of ${job_logs[$i]}:"
      tail -n 40 "${job_logs[$i]}" | sed 's/^/  | /' >&2
    fi
  done
  return $failed
}

start_job velero build_kopia build_velero
start_job csi build_csi_driver build_csi_sidecars
# The foreground part in a subshell of its own too (waited for at once), so that a failure
# stops it (`set -e`) and the jobs are still waited for and reported.
( set -e; started=$(date +%s)
  build_k8s_etcd_helm
  build_install kwok sigs.k8s.io/kwok/cmd/kwok "v$KWOK_VERSION"
  build_install kwokctl sigs.k8s.io/kwok/cmd/kwokctl "v$KWOK_VERSION"
  build_install versitygw github.com/versity/versitygw/cmd/versitygw "v$VERSITYGW_VERSION"
  [ $(( $(date +%s) - started )) -lt 2 ] || log "kubernetes, etcd, helm, kwok, versitygw: done in $(( $(date +%s) - started ))s"
) &
fg_failed=0
wait $! || fg_failed=1
jobs_failed=0
wait_jobs || jobs_failed=1
if [ $fg_failed != 0 ] || [ $jobs_failed != 0 ]; then log "the build failed (see above)"; exit 1; fi
echo "$bin"
