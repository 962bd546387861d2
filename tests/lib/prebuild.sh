#!/usr/bin/env bash
# The suite's two slow caches, built in the background while the Rust
# stages and the integration tests run: tests/run.sh starts one for each
# after the deps stage when the image or ansible stage is wanted, and waits
# for each before its stage (ansible first: its tree is ready in seconds,
# and the image base gets the ansible stage's minutes).
#   bash tests/lib/prebuild.sh image ansible
# - image: the base root of the Pi image (mmdebstrap trixie arm64 with
#   every postinst under qemu-user: ~11 min cold, about one core, see
#   docs/benchmarks.md), the longest step of a cold suite;
# - ansible: the Ansible hosts' Debian tree (tests/ansible/build-image.sh).
# tests/run.sh starts a second one before the integration tests, for the
# packaging stage (those tests mostly wait on timers; a cold run measured
# load ~1.3 on 2 cores beside the image base, docs/benchmarks.md):
#   bash tests/lib/prebuild.sh aarch64 bookworm
# - aarch64: the aarch64 release binary and its unit tests' build
#   (daemon/debian/build-aarch64.sh; cargo's lock on the target directory
#   makes the stage's own cargo wait for it), ~4 min cold;
# - bookworm: the packaging tests' chroot tarballs (mmdebstrap, amd64 and
#   arm64, and an amd64 one with apt for tests/lib/apt.sh's test;
#   tests/packaging/pkgtest.py locks each), ~3 min cold.
# Warm caches make each a check of a file. Each build holds a lock that the
# stage's own build takes too (halo-image's per-base lock, build-image.sh's),
# so a stage that gets there first waits and then finds the cache warm:
# nothing is built twice, nothing half-built is read. A failure here is
# only reported: the stage builds again itself and fails with its own
# message.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# shellcheck source=binfmt.sh
source "$root/tests/lib/binfmt.sh"
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin:/sbin"
rc=0
for what in "$@"; do
  t0=$SECONDS
  case $what in
  image)
    export HALO_IMAGE_CACHE=${HALO_IMAGE_CACHE:-${HALO_TEST_CACHE:-/var/cache/halo-tests}/image}
    if [ -f "$(image/halo-image base-path)" ]; then
      echo "prebuild: image base cached"
      continue
    fi
    # qemu-user for the arm64 postinsts.
    enable_binfmt || { rc=1; continue; }
    # At the lowest CPU and I/O priority: it takes what the stages beside
    # it leave idle (the integration tests mostly wait on timers), and
    # they keep their speed.
    nice -n 19 ionice -c 3 image/halo-image base >/dev/null || rc=1
    ;;
  ansible)
    nice -n 19 ionice -c 3 bash tests/ansible/build-image.sh >/dev/null || rc=1
    ;;
  aarch64)
    nice -n 19 ionice -c 3 bash daemon/debian/build-aarch64.sh build || rc=1
    CARGO_FLAGS="--locked --no-run" nice -n 19 ionice -c 3 bash daemon/debian/build-aarch64.sh test || rc=1
    ;;
  bookworm)
    # qemu-user for the arm64 chroot's maintainer scripts.
    enable_binfmt || { rc=1; continue; }
    nice -n 19 ionice -c 3 /usr/bin/python3 tests/packaging/pkgtest.py rootfs amd64 arm64 amd64:apt || rc=1
    ;;
  *)
    echo "prebuild: unknown cache $what" >&2
    exit 2
    ;;
  esac
  echo "prebuild: $what: $((SECONDS - t0)) s (exit $rc)"
done
exit $rc
