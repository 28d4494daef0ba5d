# Arca: the one entry point for building, testing and running locally.
# `make test` is what CI runs (.ci/run). `make demo` is the five-minute tour.

SHELL := /bin/bash
CARGO ?= cargo
NAME ?= dev
# The environment e2e tests run against; `make test` starts and stops its own.
TEST_ENV_NAME ?= test-$(shell echo $$PPID)

.PHONY: all build test lint fmt clippy unit e2e crds deploy testenv-build testenv-up testenv-down testenv-load image demo demo-cluster bench bench-mover

all: build

build:
	$(CARGO) build --workspace --all-targets

## test: everything CI checks: formatting, lints, CRDs in sync, unit and e2e tests against a
## real local Kubernetes + S3 (started here, stopped afterwards).
test: lint testenv-build unit e2e

lint: fmt clippy

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace --exclude arca-e2e

e2e: testenv-build image
	# The e2e tests spawn target/debug/arca. One build for all, as `make build` and CI's
	# first build make it: building a subset (`-p arca`, `--bins`) unifies dependency features
	# differently and compiles much of the tree again (2-3 min cold); so does `cargo run -p`.
	$(CARGO) build --workspace --all-targets
	bash hack/testenv/e2e.sh $(TEST_ENV_NAME)

## crds: regenerate crds/ and docs/reference/crds.md from the Rust types (a unit test fails
## when they differ).
crds:
	$(CARGO) run -q -p arca -- crd --dir crds
	$(CARGO) run -q -p arca -- crd --reference docs/reference/crds.md

## deploy: regenerate deploy/helm/arca and deploy/rendered from `arca install` (a test fails
## when they differ).
deploy: crds
	$(CARGO) run -q -p arca -- install --helm-chart deploy/helm/arca
	$(CARGO) run -q -p arca -- install --dry-run -o yaml -n arca-system > deploy/rendered/arca.yaml

## testenv-build: build the cluster and S3 components from Go modules into the cache (once).
testenv-build:
	bash hack/testenv/build.sh >/dev/null

## testenv-up NAME=x [NODE=real [CSI=1]]: start a local cluster + S3 in target/testenv/x; NODE=real
## adds a node run by a real kubelet over containerd (root; see docs/testing.md), CSI=1 a CSI
## driver with snapshots on it (StorageClass csi-hostpath, VolumeSnapshotClass csi-hostpath-snapclass).
NODE ?= kwok
CSI ?=
testenv-up: testenv-build
	$(CARGO) run -q -p arca-testenv -- up --name $(NAME) --node $(NODE) $(if $(filter 1,$(CSI)),--csi)

## testenv-load NAME=x IMAGE=archive.tar: import an OCI image archive into the real node.
testenv-load:
	@bash hack/testenv/load.sh target/testenv/$(NAME) $(IMAGE)

## image: Arca's container image (static binary, FROM scratch) as an OCI archive,
## target/image/arca.tar, built by buildah without a daemon. Prints the reference last.
image:
	@mkdir -p target/image; set -o pipefail; bash hack/image/build.sh | tee target/image/ref

## testenv-down NAME=x: stop exactly what testenv-up started, remove target/testenv/x.
testenv-down:
	$(CARGO) run -q -p arca-testenv -- down --name $(NAME)

## demo: bring up a local cluster and install Arca's CRDs (the backup demo comes with it).
demo: testenv-build
	bash hack/demo.sh

## demo-cluster: the tour as a cluster user takes it: the image built, Arca installed as pods
## into a local cluster with a real kubelet node, a pod's data backed up and restored (root).
demo-cluster: testenv-build
	bash hack/demo-cluster.sh

## bench: speed and memory against their floors, side by side, on a fresh environment.
## BENCH_ARGS="--sizes 10000" for a quick run. Report: target/bench/report.md
bench: testenv-build
	$(CARGO) build --release -p arca -p arca-bench
	target/release/arca-bench $(BENCH_ARGS)

## bench-mover: the data mover (a 2 GiB CSI snapshot moved into the bucket by Arca installed
## from its image on a real node) against restic on the same data (root; builds the image).
bench-mover: testenv-build image
	$(CARGO) build --release -p arca -p arca-bench
	target/release/arca-bench --data-mover $(BENCH_ARGS)
