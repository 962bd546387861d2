#!/usr/bin/env bash
# Packaging tests: aarch64 cross build and unit tests under qemu, the amd64
# and arm64 .debs, lintian, systemd-analyze, and install/upgrade/purge in
# mmdebstrap chroots. Run as root on Debian 12:  bash tests/packaging/run.sh
# (tests/run.sh calls it as its "packaging" stage). Idempotent: installs only
# missing packages; chroot tarballs are cached in /var/cache/halo-tests.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
[ "$(id -u)" -eq 0 ] || { echo "packaging: must run as root (apt, chroot, binfmt)" >&2; exit 1; }


# shellcheck source=../lib/apt.sh
source "$root/tests/lib/apt.sh"
# shellcheck source=../lib/steps.sh
source "$root/tests/lib/steps.sh"
install_deps() { install_listed packaging tests/packaging/apt-packages.txt; }

# shellcheck source=../lib/binfmt.sh
source "$root/tests/lib/binfmt.sh"

build_debs() {
  bash daemon/debian/build-deb.sh amd64
  # The upgrade test's package: same binary, version + "+test1".
  HALO_DEB_BIN=target/release/halo HALO_DEB_VERSION_SUFFIX=+test1 bash daemon/debian/build-deb.sh amd64
  HALO_DEB_BIN=target/aarch64-unknown-linux-gnu/release/halo bash daemon/debian/build-deb.sh arm64
}

steps_begin packaging
step "apt packages" install_deps
step "binfmt qemu-aarch64" enable_binfmt
step "aarch64 release build" bash daemon/debian/build-aarch64.sh build
step "aarch64 unit tests under qemu" bash daemon/debian/build-aarch64.sh test
step "debs (amd64, amd64+test1, arm64)" build_debs
step "pytest tests/packaging" /usr/bin/python3 -m pytest -q -p no:cacheprovider -rs tests/packaging
