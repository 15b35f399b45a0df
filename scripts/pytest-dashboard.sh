#!/usr/bin/env bash
# The dashboard in a real browser: builds the manager, the subscriber and the
# deployer, then runs deployer/tests/browser with pytest; the tests start
# etcd and those binaries on free ports themselves (stack.py) and drive
# Debian's chromium headless through the system chromedriver (selenium).
# pytest's exit 5 (no tests ran) fails.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -q -p manager -p subscriber -p deployer --bins
set +e
"${MDO_TOOLS_PYTHON:-python3}" -m pytest -q -p no:cacheprovider deployer/tests/browser "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi
exit "$rc"
