#!/bin/bash
# mmdebstrap --setup-hook for the halo Pi image: runs before any package is
# installed, with the root file system directory as $1.
#
# The initramfs is built under qemu-user (once, in the customize hook). With
# initramfs-tools' default MODULES=most that takes over 20 minutes (one
# emulated modprobe per module); MODULES=list with the list in
# initramfs-modules keeps it to the modules the Pi and the qemu test machine
# need. The files are in place before initramfs-tools is unpacked;
# mmdebstrap runs dpkg with --force-confold so they stay (dpkg puts its own
# versions beside them as .dpkg-dist). On the Pi itself, update-initramfs
# after a kernel upgrade uses the same list.
set -euo pipefail
r=$1
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$r/etc/initramfs-tools/conf.d" "$r/boot/firmware"
cat >"$r/etc/initramfs-tools/conf.d/halo-image.conf" <<'CONF'
# halo image: only the modules in /etc/initramfs-tools/modules (see there).
MODULES=list
COMPRESS=zstd
CONF
install -m 0644 "$here/initramfs-modules" "$r/etc/initramfs-tools/modules"
