#!/usr/bin/env bash
# Install everything the test suite and `halo lab` need on Debian 12, as root.
# Idempotent: packages already present are skipped, so a second run is quick.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: must run as root (apt-get, network namespaces)" >&2
  exit 1
fi

# shellcheck source=apt.sh
source "$here/lib/apt.sh"
install_listed install-deps "$here"/apt-packages.txt "$here"/*/apt-packages.txt

# A Rust toolchain: rustup's if present, otherwise Debian's.
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    :
  else
    echo "install-deps: no cargo found; installing Debian's rustc-web and cargo-web"
    apt_retry apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt_retry apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends rustc-web cargo-web >/dev/null
  fi
fi
echo "install-deps: ok"
