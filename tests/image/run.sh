#!/usr/bin/env bash
# Image tests: build the Raspberry Pi image (image/halo-image build, Debian
# trixie), a plain Debian image whose network NetworkManager manages (as
# Raspberry Pi OS's) and the same customised with --base, then pytest
# tests/image: static checks of the images, the `node` command, and boots in
# qemu-system-aarch64 (TCG), one VM at a time: the image on `virt` (halo's
# READY, the proxy, MASTER, SSH by key only, the grown root), on the Pi 3 B
# board model `raspi3b` with a cloud-init NoCloud seed (host name, key,
# static address, halo.toml by write_files), the --base image with
# NetworkManager and a broken user-data, and two cards (lb1, lb2) on a
# `halo lab` network that elect one master and fail over. Run as root on
# Debian 12 or 13:
#   bash tests/image/run.sh          (tests/run.sh calls it as stage "image")
# Build outputs go to build/image/ (HALO_IMAGE_OUT); the base root file
# system is cached in /var/cache/halo-tests/image (HALO_IMAGE_CACHE), beside
# the other caches of the suite (qemu, the Ansible hosts' tree), so a second
# run -- also from another checkout of the same image/base/ -- skips the slow
# mmdebstrap (trixie with cloud-init: the longest step of the suite when
# cold, see docs/benchmarks.md). Timings of each step are printed at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export HALO_IMAGE_CACHE=${HALO_IMAGE_CACHE:-${HALO_TEST_CACHE:-/var/cache/halo-tests}/image}
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin:/sbin"
[ "$(id -u)" -eq 0 ] || { echo "image: must run as root (mmdebstrap, chroot, loop devices)" >&2; exit 1; }
out=${HALO_IMAGE_OUT:-$root/build/image}
mkdir -p "$out"


# shellcheck source=../lib/apt.sh
source "$root/tests/lib/apt.sh"
# shellcheck source=../lib/steps.sh
source "$root/tests/lib/steps.sh"
# libc6:arm64 (apt-packages.txt): install_listed adds the arm64 architecture.
install_deps() { install_listed image tests/image/apt-packages.txt; }

# qemu-system-aarch64. Debian's qemu-system-arm normally; on a machine where
# it cannot be installed (here: qemu-utils from bookworm-backports, which
# Breaks bookworm's qemu-system-common) the package is unpacked into a cache
# directory instead, its libraries installed from Debian. -kernel boots of
# the "virt" machine need no firmware files from qemu-system-data.
qemu_dir=${HALO_TEST_CACHE:-/var/cache/halo-tests}/qemu-system
ensure_qemu() {
  if command -v qemu-system-aarch64 >/dev/null; then
    HALO_QEMU=$(command -v qemu-system-aarch64)
  elif DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-remove --no-install-recommends \
    qemu-system-arm >/dev/null 2>&1; then
    HALO_QEMU=$(command -v qemu-system-aarch64)
  else
    echo "image: qemu-system-arm cannot be installed next to this machine's qemu packages; unpacking it into $qemu_dir"
    local deps
    deps=$(apt-cache depends --no-recommends --no-suggests qemu-system-arm 2>/dev/null |
      awk '/^  Depends: lib/ {print $2}' | sort -u | tr '\n' ' ')
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt_retry apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $deps >/dev/null
    if [ ! -x "$qemu_dir/root/usr/bin/qemu-system-aarch64" ]; then
      # Unpacked aside and moved into place: an interrupted run leaves no
      # half tree that the test above would take for a complete one.
      mkdir -p "$qemu_dir"
      (cd "$qemu_dir" && rm -rf ./*.deb root.tmp && apt_retry apt-get download qemu-system-arm >/dev/null &&
        dpkg-deb -x qemu-system-arm_*.deb root.tmp && rm -rf root && mv root.tmp root)
    fi
    HALO_QEMU=$qemu_dir/root/usr/bin/qemu-system-aarch64
  fi
  "$HALO_QEMU" --version | head -n1
  export HALO_QEMU
}

# shellcheck source=../lib/binfmt.sh
source "$root/tests/lib/binfmt.sh"

build_deb() {
  # daemon/debian/build-deb.sh builds the aarch64 binary first (cargo,
  # incremental) and prints the .deb's path last.
  local deb
  deb=$(bash daemon/debian/build-deb.sh arm64 | tail -n1)
  [ -f "$deb" ] || { echo "image: no arm64 .deb built" >&2; return 1; }
  # A copy: the packaging tests clear target/debian/ when they rebuild.
  cp "$deb" "$out/"
  HALO_IMAGE_DEB=$out/$(basename "$deb")
  export HALO_IMAGE_DEB
}

# cold: the base root tarball for the current image/base/ is not cached yet.
kind=warm
[ -f "$(image/halo-image base-path)" ] || kind=cold

build_image() {
  local t0=$SECONDS try
  # A cold build downloads a few hundred packages for the base root
  # (mmdebstrap, with apt's own retries). When the build fails and that base
  # is still not cached, the failure was in that download-heavy step: try
  # again, at most twice. Any failure once the base is there is final.
  for try in 1 2 3; do
    # A base that tests/lib/prebuild.sh is building in the background:
    # halo-image waits on its lock, then finds it cached.
    if image/halo-image build --deb "$HALO_IMAGE_DEB" --out "$out"; then
      break
    fi
    if [ -f "$(image/halo-image base-path)" ] || [ $try -eq 3 ]; then
      return 1
    fi
    echo "image: the base root build failed (try $try of 3); trying again in $((try * 30)) s" >&2
    rm -f "$(image/halo-image base-path).tmp"
    sleep $((try * 30))
  done
  echo "$kind $((SECONDS - t0))" >"$out/build-time.txt"
  export HALO_IMAGE=$out/halo-pi-arm64.img
}

build_base_variant() {
  # A plain Debian Pi image stands in for a downloaded Raspberry Pi OS Lite
  # (NetworkManager manages its network): --base adds halo to it in place.
  image/halo-image build --no-halo --no-xz --out "$out"
  xz -T0 -0 -f -k "$out/debian-pi-arm64.img"
  image/halo-image build --base "$out/debian-pi-arm64.img.xz" --deb "$HALO_IMAGE_DEB" --no-xz --out "$out"
  export HALO_BASE_IMAGE=$out/debian-pi-arm64-halo.img
  rm -f "$out/debian-pi-arm64.img.xz"
}

steps_begin image
step "apt packages" install_deps
step "qemu-system-aarch64" ensure_qemu
step "binfmt qemu-aarch64" enable_binfmt
step "halo arm64 .deb" build_deb
step "image build ($kind)" build_image
step "plain image + --base customisation" build_base_variant
step "pytest tests/image (static, node, boot, raspi3b, base boot, pair)" /usr/bin/python3 -m pytest -q -p no:cacheprovider -rs tests/image
