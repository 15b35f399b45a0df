#!/usr/bin/env bash
# Builds the guestutils wheel (maturin, abi3), installs it ALONE (plus pytest)
# into a fresh virtualenv, and runs guestutils/python/tests against a real
# etcd started by the tests. Exit status: pytest's; "no tests collected" (5)
# counts as a failure.
#
# GUESTUTILS_RELEASE=1 builds an optimised wheel (slower to build).
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d -t guestutils-pytest-XXXXXX)"
trap 'rm -rf "$work"' EXIT

profile=()
if [ "${GUESTUTILS_RELEASE:-0}" = "1" ]; then profile=(--release); fi

echo "== building the guestutils wheel"
maturin build "${profile[@]}" -m guestutils/python/Cargo.toml --out "$work/dist"
wheel="$(ls "$work"/dist/guestutils-*.whl)"

echo "== fresh virtualenv with only the wheel and pytest"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel" "pytest>=8"

echo "== pytest"
set +e
(cd "$work" && "$work/venv/bin/python" -m pytest -p no:cacheprovider -v \
  --rootdir "$OLDPWD/guestutils/python/tests" "$OLDPWD/guestutils/python/tests")
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$status"
