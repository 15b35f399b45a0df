#!/usr/bin/env bash
# Screenshots of the dashboard for the README, from the real page against the
# real demo: builds the binaries, brings up `cluster-setup up --demo` (real
# containers of the example image) with a state folder and ports of its own,
# drives Debian's headless chromium through the system chromedriver
# (selenium, from scripts/requirements-dev.txt) to write
# docs/dashboard-running.png, docs/dashboard-deploying.png and
# docs/dashboard-failing.png (MDO_SCREENSHOTS_DIR to write elsewhere), then
# takes that stack down again. Needs the Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=install-deps.sh
source scripts/install-deps.sh
cargo build -q --workspace --bins
bins="${CARGO_TARGET_DIR:-target}/debug"

free_port() {
  "$MDO_TOOLS_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
state="$(mktemp -d /tmp/mdo-screenshots-XXXXXX)"
deployer_port="$(free_port)"
args=(--state-dir "$state" --etcd-port "$(free_port)" --etcd-peer-port "$(free_port)"
      --manager-port "$(free_port)" --deployer-port "$deployer_port"
      --subscriber-port "$(free_port)" --bin-dir "$bins")
# An open deployer: the pictures show the page, not the sign-in form.
unset MDO_AUTH_TOKEN

down() {
  "$bins/cluster-setup" down "${args[@]}" || true
  rm -rf "$state"
}
trap down EXIT

"$bins/cluster-setup" up --demo "${args[@]}"
MDO_SCREENSHOTS_DEPLOYER="http://127.0.0.1:$deployer_port" \
  "$MDO_TOOLS_PYTHON" scripts/dashboard_screenshots.py
