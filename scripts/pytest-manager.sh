#!/usr/bin/env bash
# marathon-python (PyPI `marathon`) against the real manager: builds the
# manager, starts etcd and the manager on free ports, runs
# manager/tests/python with pytest. pytest's exit 5 (no tests ran) fails.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -p manager --bins
BIN="${CARGO_TARGET_DIR:-target}/debug"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

WORK="$(mktemp -d)"
ETCD_CLIENT="$(free_port)"; ETCD_PEER="$(free_port)"; API="$(free_port)"
URL="http://127.0.0.1:$API"
ETCD_PID=""; MANAGER_PID=""

cleanup() {
  if [ -n "$MANAGER_PID" ] && kill -0 "$MANAGER_PID" 2>/dev/null; then
    # Stop every task first (the manager leaves tasks running on exit).
    for id in $(curl -fsS "$URL/v2/apps" 2>/dev/null | python3 -c 'import json,sys; print(" ".join(a["id"] for a in json.load(sys.stdin)["apps"]))' 2>/dev/null); do
      curl -fsS -X DELETE "$URL/v2/apps$id?force=true" >/dev/null 2>&1 || true
    done
    for _ in $(seq 1 100); do
      n="$(curl -fsS "$URL/v2/tasks" 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["tasks"]))' 2>/dev/null || echo 0)"
      [ "$n" = "0" ] && break
      sleep 0.1
    done
    kill "$MANAGER_PID" 2>/dev/null || true
    wait "$MANAGER_PID" 2>/dev/null || true
  fi
  if [ -n "$ETCD_PID" ]; then kill "$ETCD_PID" 2>/dev/null || true; wait "$ETCD_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

etcd --data-dir "$WORK/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
  --initial-cluster "default=http://127.0.0.1:$ETCD_PEER" >"$WORK/etcd.log" 2>&1 &
ETCD_PID=$!
for _ in $(seq 1 300); do
  ETCDCTL_API=3 etcdctl --endpoints "http://127.0.0.1:$ETCD_CLIENT" endpoint health >/dev/null 2>&1 && break
  sleep 0.1
done

"$BIN/manager" --listen "127.0.0.1:$API" --etcd-endpoints "http://127.0.0.1:$ETCD_CLIENT" \
  --data-dir "$WORK/data" --docker off --node-cpus 4 --node-mem 4096 >"$WORK/manager.log" 2>&1 &
MANAGER_PID=$!

for _ in $(seq 1 300); do
  curl -fsS "$URL/ping" >/dev/null 2>&1 && break
  kill -0 "$MANAGER_PID" 2>/dev/null || { cat "$WORK/manager.log"; exit 1; }
  sleep 0.1
done
curl -fsS "$URL/ping" >/dev/null || { echo "manager did not start"; cat "$WORK/manager.log"; exit 1; }

set +e
# The Python test tools' interpreter (scripts/install-deps.sh), else python3.
MARATHON_URL="$URL" "${MDO_TOOLS_PYTHON:-python3}" -m pytest -q manager/tests/python "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi
if [ "$rc" -ne 0 ]; then echo "--- manager log (tail)"; tail -50 "$WORK/manager.log"; fi
exit "$rc"
