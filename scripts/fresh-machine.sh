#!/usr/bin/env bash
# A fresh-machine check: runs the README's commands, exactly as written there,
# in a minimal Debian root that has only what a new machine of this kind has
# (a Rust toolchain, gcc, Python 3, the Docker CLI and engine) and none of what
# the project installs (no etcd, no protoc, no maturin, no pytest, no images).
#
#   bash scripts/fresh-machine.sh [--keep-images] [--skip-tests] [--prepare]
#
# How: debootstrap builds the root once (cached as the image
# mdo/fresh-machine:bookworm); a container from it gets a copy of this checkout
# as a fresh clone has it (the committed HEAD: no target/, no .state/, no
# uncommitted change), the host's Rust toolchain read-only, the Docker
# socket, the host network and the host's /tmp (so paths the tests bind-mount
# into containers mean the same on the engine's side). In it, the commands
# marked `<!-- fresh-machine: NAME -->` in README.md run in order: `up` (with
# --demo), `status`, `demo-curl`, `down`, then `test`. Each prints its time; the
# first failure stops the run with a non-zero exit.
#
# The images the project builds (mdo/base, mdo/example, mdo-test/*) are
# removed first so the demo and the tests build them as on a new machine;
# --keep-images keeps them. The stack runs on its default ports (2379, 2380,
# 8080, 5000, 5001), which must be free on this host. Needs root (debootstrap,
# the Docker socket). --prepare only builds the Debian root image.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

keep_images=0
skip_tests=0
prepare_only=0
for a in "$@"; do
  case "$a" in
    --prepare) prepare_only=1 ;;
    --keep-images) keep_images=1 ;;
    --skip-tests) skip_tests=1 ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fresh-machine: unknown argument $a (see --help)" >&2; exit 64 ;;
  esac
done

say() { echo "fresh-machine: $*"; }
die() { echo "fresh-machine: $*" >&2; exit 1; }

[ "$(id -u)" = "0" ] || die "needs root (debootstrap, the Docker socket): run it with sudo"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer"
command -v debootstrap >/dev/null || {
  say "apt-get install debootstrap"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
for port in $([ "$prepare_only" = 1 ] || echo 2379 2380 8080 5000 5001); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is in use on this host; stop what listens there (cargo run -p cluster-setup -- down?)"
  fi
done

image=mdo/fresh-machine:bookworm
cache="$root/.state/cache"
if ! docker image inspect "$image" >/dev/null 2>&1; then
  mkdir -p "$cache"
  rootfs="$cache/fresh-machine-rootfs"
  rm -rf "$rootfs"
  mirror="$(sed -n 's/^URIs: *\(http[^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -1)"
  mirror="${mirror:-http://deb.debian.org/debian}"
  say "debootstrap bookworm (minbase + gcc, python3, git, curl) -> $image"
  t0=$(date +%s)
  debootstrap --variant=minbase \
    --include=gcc,libc6-dev,python3,python3-pip,git,curl,ca-certificates,openssl,procps,xz-utils \
    bookworm "$rootfs" "$mirror" >"$cache/fresh-machine-debootstrap.log" 2>&1 \
    || die "debootstrap failed: see $cache/fresh-machine-debootstrap.log"
  # What every machine of this kind carries beside Debian: its extra CA
  # certificates (the registries are reached through them) and pip's settings.
  if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in the new root"
  fi
  [ -f /etc/pip.conf ] && cp /etc/pip.conf "$rootfs/etc/pip.conf"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" --numeric-owner -c . | docker import --change 'ENV LANG=C.UTF-8' - "$image" >/dev/null
  rm -rf "$rootfs"
  say "base root built in $(( $(date +%s) - t0 )) s (not counted below: a real machine comes with it)"
fi

if [ "$prepare_only" = "1" ]; then
  say "$image is ready (--prepare: nothing run)"
  exit 0
fi

if [ "$keep_images" = "0" ]; then
  imgs="$(docker images --format '{{.Repository}}:{{.Tag}}' | grep -E '^(mdo/(base|example)|mdo-test/)' || true)"
  if [ -n "$imgs" ]; then
    say "removing the project's images so they are built as on a new machine: $(echo $imgs)"
    # shellcheck disable=SC2086
    docker rmi -f $imgs >/dev/null
  fi
fi

work="$(mktemp -d /tmp/mdo-fresh-XXXXXX)"
trap 'rm -rf "$work"' EXIT
src="$work/mdo"
mkdir -p "$src"
git archive --format=tar HEAD | tar -C "$src" -xf -

# The commands, as README.md writes them, each block behind its marker.
extract() {
  awk -v want="<!-- fresh-machine: $1 -->" '
    $0 == want { armed = 1; next }
    armed && /^```/ { if (inblock) exit; inblock = 1; next }
    inblock { print }
  ' "$root/README.md"
}
for step in up status demo-curl down test; do
  extract "$step" >"$work/$step.sh"
  [ -s "$work/$step.sh" ] || die "README.md has no command block marked <!-- fresh-machine: $step -->"
done
steps=(up status demo-curl down)
[ "$skip_tests" = "1" ] || steps+=(test)

cat >"$work/run-in-container.sh" <<'EOF'
set -euo pipefail
cd "$SRC"
total0=$(date +%s)
for step in $STEPS; do
  echo "fresh-machine: == $step:"
  sed 's/^/fresh-machine:    /' "$WORK/$step.sh"
  t0=$(date +%s)
  if ! bash -euo pipefail "$WORK/$step.sh"; then
    echo "fresh-machine: FAILED at $step after $(( $(date +%s) - t0 )) s" >&2
    if [ "$step" != "down" ] && [ "$step" != "test" ]; then
      cargo run -q -p cluster-setup -- down >/dev/null 2>&1 || true
    fi
    exit 1
  fi
  echo "fresh-machine: $step took $(( $(date +%s) - t0 )) s"
done
echo "fresh-machine: all steps passed in $(( $(date +%s) - total0 )) s"
EOF

rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"
cargo_bin="$(dirname "$(command -v cargo)")"
mounts=(
  -v /var/run/docker.sock:/var/run/docker.sock
  -v "$(command -v docker)":/usr/local/bin/docker:ro
  -v "$rustup_home":/opt/rustup:ro
  -v "$cargo_bin":/opt/cargo-bin:ro
  -v /tmp:/tmp
)
if command -v cargo-nextest >/dev/null; then
  # cargo-nextest comes with this kind of machine's Rust toolchain.
  mounts+=(-v "$(command -v cargo-nextest)":/usr/local/bin/cargo-nextest:ro)
fi

say "running the README's commands in $image ($(git rev-parse --short HEAD) copied to $src)"
docker run --rm --network host \
  --cap-add SYS_ADMIN --security-opt seccomp=unconfined --security-opt apparmor=unconfined "${mounts[@]}" \
  -e RUSTUP_HOME=/opt/rustup -e CARGO_HOME=/root/.cargo \
  -e PATH=/root/.cargo/bin:/opt/cargo-bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  -e SSL_CERT_FILE -e SSL_CERT_DIR -e PIP_CERT -e CURL_CA_BUNDLE -e REQUESTS_CA_BUNDLE \
  -e PIP_DEFAULT_TIMEOUT -e RUSTUP_AUTO_INSTALL \
  -e CI=true -e SRC="$src" -e WORK="$work" -e STEPS="${steps[*]}" \
  --name "mdo-fresh-machine-$$" \
  "$image" bash "$work/run-in-container.sh"
