#!/usr/bin/env bash
# Builds the test environment's components from Go modules into a cache outside the checkout:
#   ${ARCA_TESTENV_CACHE:-~/.cache/arca-testenv}/<versions>/bin
# Skips every component whose binary is already there (kopia: whose stamp file
# bin/.kopia-version names KOPIA_VERSION; velero and velero-plugin-for-aws: whose stamp file
# bin/.velero-version names their versions; neither is in the cache key, so changing their
# versions rebuilds them alone). Prints the bin folder on stdout last.
# Needs: go (>= 1.24) and the Go module proxy. No binary downloads.
# `build.sh --print-bin` only prints the bin folder; `--print-cache` the cache folder.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

command -v go >/dev/null || { echo "testenv: 'go' is not on PATH. Install Go >= 1.24 (https://go.dev/doc/install or the golang-go package)." >&2; exit 1; }

root=${ARCA_TESTENV_CACHE:-$HOME/.cache/arca-testenv}
key="k8s-$K8S_VERSION.etcd-$ETCD_VERSION.kwok-$KWOK_VERSION.vgw-$VERSITYGW_VERSION.helm-$HELM_VERSION"
cache="$root/$key"
bin="$cache/bin"
if [ "${1:-}" = "--print-bin" ]; then echo "$bin"; exit 0; fi
if [ "${1:-}" = "--print-cache" ]; then echo "$cache"; exit 0; fi
mkdir -p "$bin" "$cache/src"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
log() { echo "testenv: $*" >&2; }

have() { [ -x "$bin/$1" ]; }

build_k8s() {
  if have kube-apiserver && have kube-controller-manager && have kube-scheduler && have kubectl \
    && have kubelet && have kube-proxy; then return; fi
  log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet, kube-proxy v$K8S_VERSION (cold: 20-40 min on 2 cores)"
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
  local p="k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy"
  # shellcheck disable=SC2046
  go get $(for x in $p; do echo "$x@v$K8S_VERSION"; done)
  local minor; minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  local ld="-s -w" pk
  for pk in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pk.gitVersion=v$K8S_VERSION -X $pk.gitMajor=1 -X $pk.gitMinor=$minor -X $pk.gitTreeState=clean"
  done
  # shellcheck disable=SC2086
  go build -trimpath -ldflags "$ld" -o "$bin/" $p
}

build_etcd() {
  have etcd && return
  log "building etcd v$ETCD_VERSION"
  local d="$cache/src/etcd"; rm -rf "$d"; mkdir -p "$d"; cd "$d"
  go mod init local/etcd >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3
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
# k8s.io/cli-runtime the module proxy serves (it refuses v0.33.11 and v0.33.12). The plugin is
# put in bin/velero-plugins/, the folder given to `velero server --plugin-dir` (Velero runs
# every executable of that folder as a plugin, so it cannot be bin/ itself).
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
  go get "github.com/vmware-tanzu/velero/cmd/velero@v$VELERO_VERSION"
  go build -trimpath \
    -ldflags "-s -w -X github.com/vmware-tanzu/velero/pkg/buildinfo.Version=v$VELERO_VERSION" \
    -o "$bin/velero" github.com/vmware-tanzu/velero/cmd/velero
  # The plugin's go.mod has no replace directives: a plain `go install` builds it.
  GOBIN="$bin/velero-plugins" go install -trimpath -ldflags "-s -w" \
    "github.com/vmware-tanzu/velero-plugin-for-aws/velero-plugin-for-aws@v$VELERO_AWS_PLUGIN_VERSION"
  echo "$want" >"$stamp"
}

build_k8s
build_etcd
build_install kwok sigs.k8s.io/kwok/cmd/kwok "v$KWOK_VERSION"
build_install kwokctl sigs.k8s.io/kwok/cmd/kwokctl "v$KWOK_VERSION"
build_install versitygw github.com/versity/versitygw/cmd/versitygw "v$VERSITYGW_VERSION"
build_install helm helm.sh/helm/v3/cmd/helm "v$HELM_VERSION"
build_kopia
build_velero
echo "$bin"
