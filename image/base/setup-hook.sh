#!/bin/bash
# mmdebstrap --setup-hook for the halo Pi image: runs before any package is
# installed, with the root file system directory as $1.
#
# The kernel package's postinst builds the initramfs, under qemu-user here.
# With initramfs-tools' default MODULES=most that takes over 20 minutes (one
# emulated modprobe per module); MODULES=list keeps it to the modules the Pi
# and the qemu test machine need (customize-hook.sh writes the list and
# rebuilds it once). The setting stays in the image: on the Pi itself,
# update-initramfs after a kernel upgrade uses the same list.
set -euo pipefail
r=$1
mkdir -p "$r/etc/initramfs-tools/conf.d" "$r/boot/firmware"
cat >"$r/etc/initramfs-tools/conf.d/halo-image.conf" <<'CONF'
# halo image: only the modules in /etc/initramfs-tools/modules (see there).
MODULES=list
COMPRESS=zstd
CONF
