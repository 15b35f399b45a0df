#!/usr/bin/env bash
# Runs every test: the Rust workspace (real etcd, real Docker), then the
# Python suites (the guestutils wheel in a fresh virtualenv, marathon-python
# against the manager). This is the README's test command: on a fresh machine
# it first installs what is missing (scripts/install-deps.sh says one line for
# each install; MDO_NO_INSTALL=1 fails with the command to run instead).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing what is missing (scripts/install-deps.sh)"
# shellcheck source=install-deps.sh
source scripts/install-deps.sh

echo "== cargo fmt --check, cargo clippy (warnings are errors)"
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
else
  echo "rustfmt is not installed: format check skipped" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets --quiet -- -D warnings
else
  echo "clippy is not installed: lint check skipped" >&2
fi

echo "== cargo nextest (workspace)"
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast --profile ci

# Python suites: each scripts/pytest-*.sh builds what it needs and runs pytest.
for suite in scripts/pytest-*.sh; do
  [ -e "$suite" ] || continue
  echo "== $suite"
  bash "$suite"
done
