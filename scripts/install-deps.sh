#!/usr/bin/env bash
# Installs what the test command needs and a fresh machine of this kind lacks:
# Debian packages (etcd, protoc, busybox-static, debootstrap, Python headers,
# chromium and chromedriver for the dashboard's browser tests...),
# cargo-nextest, and the Python test tools (maturin, pytest, marathon-python)
# in a virtualenv under .state/tools (never the system Python).
#
# Sourced by scripts/test.sh (PATH gets the tools' virtualenv at its end, and
# MDO_TOOLS_PYTHON names the virtualenv's interpreter); safe to run
# again: it installs only what is missing and says one line for each install.
# Without root or without apt-get it stops with one line naming the command.
#
# MDO_TOOLS_DIR: where the tools' virtualenv lives (default .state/tools).
# MDO_NO_INSTALL=1: never install; fail with the command to run instead.

set -euo pipefail
_mdo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

_mdo_fail() { echo "install-deps: $*" >&2; exit 1; }

_mdo_apt_packages=(etcd-server etcd-client protobuf-compiler busybox-static debootstrap chromium chromium-driver
  python3 python3-dev python3-venv libpython3.11 curl ca-certificates openssl)
_mdo_missing=()
for p in "${_mdo_apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || _mdo_missing+=("$p")
done
if [ "${#_mdo_missing[@]}" -gt 0 ]; then
  if [ "${MDO_NO_INSTALL:-0}" = "1" ]; then
    _mdo_fail "missing Debian packages ${_mdo_missing[*]}; run: sudo apt-get install ${_mdo_missing[*]}"
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    _mdo_fail "missing ${_mdo_missing[*]} and no apt-get here; install them with this system's package manager"
  fi
  if [ "$(id -u)" != "0" ]; then
    _mdo_fail "missing Debian packages ${_mdo_missing[*]}; run: sudo apt-get install ${_mdo_missing[*]}"
  fi
  echo "install-deps: apt-get install ${_mdo_missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${_mdo_missing[@]}" >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  [ "${MDO_NO_INSTALL:-0}" = "1" ] && _mdo_fail "cargo-nextest is missing; run: cargo install --locked cargo-nextest"
  echo "install-deps: cargo install --locked cargo-nextest (a few minutes)"
  cargo install --quiet --locked cargo-nextest
fi

_mdo_tools="${MDO_TOOLS_DIR:-$_mdo_root/.state/tools}"
_mdo_venv="$_mdo_tools/venv"
_mdo_req="$_mdo_root/scripts/requirements-dev.txt"
_mdo_stamp="$_mdo_venv/.requirements"
if [ ! -x "$_mdo_venv/bin/python" ] || ! cmp -s "$_mdo_req" "$_mdo_stamp"; then
  [ "${MDO_NO_INSTALL:-0}" = "1" ] && _mdo_fail "the Python test tools are missing; run: python3 -m venv $_mdo_venv && $_mdo_venv/bin/pip install -r $_mdo_req"
  echo "install-deps: pip install -r scripts/requirements-dev.txt into $_mdo_venv"
  mkdir -p "$_mdo_tools"
  [ -x "$_mdo_venv/bin/python" ] || python3 -m venv "$_mdo_venv"
  "$_mdo_venv/bin/python" -m pip install -q --disable-pip-version-check -r "$_mdo_req"
  cp "$_mdo_req" "$_mdo_stamp"
fi
# Appended, not prepended: `python3` must stay the machine's own interpreter
# (the watcher's embedded Python finds its prefix through `python3` on PATH,
# and a virtualenv's pyvenv.cfg would turn its user site off); maturin and
# pytest exist only in the virtualenv, so they are found there.
export PATH="$PATH:$_mdo_venv/bin"
export MDO_TOOLS_PYTHON="$_mdo_venv/bin/python"
