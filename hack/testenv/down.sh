#!/usr/bin/env bash
# Stops exactly what `arca-testenv up` started in DIR, by pid, and removes DIR.
#   kwokctl's components: by the pids kwokctl recorded (kwokctl delete cluster).
#   versitygw: by DIR/pids/versitygw.pid.
set -uo pipefail
dir=${1:?usage: down.sh DIR}
[ -d "$dir" ] || exit 0
name=$(basename "$dir")
bin=$(sed -n 's/^ARCA_TESTENV_BIN=//p' "$dir/testenv.env" 2>/dev/null)
if [ -z "$bin" ]; then
  here=$(cd "$(dirname "$0")" && pwd)
  bin=$(bash "$here/build.sh" --print-bin)
fi
status=0
if [ -d "$dir/kwok/clusters/$name" ] && [ -x "$bin/kwokctl" ]; then
  KWOK_WORKDIR="$dir/kwok" PATH="$bin:$PATH" "$bin/kwokctl" delete cluster --name "$name" >/dev/null 2>&1 || status=$?
fi
# Whatever kwokctl did not stop (or when kwokctl is gone), stop from the pid files it keeps.
for pidfile in "$dir"/pids/*.pid "$dir"/kwok/clusters/"$name"/pids/*.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  fi
done
rm -rf "$dir"
exit $status
