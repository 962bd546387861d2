# shellcheck shell=bash
# qemu-user for arm64 chroots and test binaries: the kernel's binfmt_misc,
# with qemu-user-static's "F" (fix-binary) entry, so it works inside chroots.
# Sourced by the packaging and image stages and tests/lib/prebuild.sh.
enable_binfmt() {
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  if ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
    update-binfmts --enable qemu-aarch64
  fi
  grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64
  grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64
}
