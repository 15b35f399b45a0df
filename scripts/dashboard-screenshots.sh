#!/usr/bin/env bash
# Screenshots of the dashboard for the README, from the real page: builds
# the manager, the subscriber and the deployer, starts them with etcd on free
# ports (command tasks), and drives Debian's headless chromium through the
# system chromedriver (selenium, from scripts/requirements-dev.txt) to write
# docs/dashboard-running.png, docs/dashboard-deploying.png and
# docs/dashboard-failing.png (MDO_SCREENSHOTS_DIR to write elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=install-deps.sh
source scripts/install-deps.sh
cargo build -q -p manager -p subscriber -p deployer --bins
"$MDO_TOOLS_PYTHON" scripts/dashboard_screenshots.py
