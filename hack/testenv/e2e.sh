#!/usr/bin/env bash
# e2e.sh NAME: `make e2e`'s run: two environments (NAME with kwok nodes, NAME-node with the
# real node and the CSI driver), the kwok suite on the first, the node suite on the second,
# both environments down at the end whatever happens. On a failure, the environments' logs are
# kept (hack/testenv/keep-logs.sh) and the last lines printed say which step failed and why
# (the failed tests, the panics, the error a command ended with): CI shows only an output's
# tail. Every step's output is also in target/e2e-logs/NAME.steps/.
set -euo pipefail
name=${1:?usage: e2e.sh NAME}
testenv=target/debug/arca-testenv
steps=target/e2e-logs/$name.steps
rm -rf "$steps"
mkdir -p "$steps"
step="starting"

finish() {
  local rc=$?
  [ "$rc" -eq 0 ] || bash hack/testenv/keep-logs.sh "$name" "$name-node"
  "$testenv" down --name "$name"
  "$testenv" down --name "$name-node"
  if [ "$rc" -ne 0 ]; then
    echo "e2e: FAILED (exit $rc) while $step; what it said (all of it in $steps):"
    grep -h -E -A3 '^test .* FAILED$|panicked at|^Error: ' "$steps"/*.log 2>/dev/null | tail -n 20
  fi
}
trap finish EXIT

# run LABEL COMMAND...: one step, its output shown and kept.
n=0
run() {
  step=$1
  shift
  n=$((n + 1))
  "$@" 2>&1 | tee "$steps/$n.log"
}

# anyhow's backtrace (RUST_BACKTRACE=1 in CI) would bury the error line it follows.
export RUST_LIB_BACKTRACE=0
run "starting environment $name" "$testenv" up --name "$name"
run "starting environment $name-node (real node, CSI)" "$testenv" up --name "$name-node" --node real --csi
ARCA_TESTENV=$name run "running the kwok suite (tests/e2e)" \
  cargo test --workspace --test e2e -- --test-threads=4
ARCA_TESTENV=$name-node ARCA_IMAGE=$(tail -n 1 target/image/ref) run "running the node suite (tests/node)" \
  cargo test --workspace --test node -- --test-threads=1
