#!/usr/bin/env bash
# Runs every test: the Rust workspace (real etcd, real Docker), then the
# Python suites (the guestutils wheel in a fresh virtualenv, marathon-python
# against the manager). This is the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo nextest (workspace)"
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast --profile ci

# Python suites: each scripts/pytest-*.sh builds what it needs and runs pytest.
for suite in scripts/pytest-*.sh; do
  [ -e "$suite" ] || continue
  echo "== $suite"
  bash "$suite"
done
