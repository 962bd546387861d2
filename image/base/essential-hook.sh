#!/bin/bash
# mmdebstrap --essential-hook for the halo Pi image: runs once the Essential
# packages (dpkg among them) are installed and before the rest, with the root
# file system directory as $1.
#
# update-initramfs is diverted to a stub for the install: the kernel's
# postinst (update-initramfs -c) and every package that triggers it
# (initramfs-tools, udev, kmod, busybox, zstd, console-setup ...: update -u)
# would each build the initramfs under qemu-user, minutes each. The
# customize hook removes the stub, puts the real one back and builds the
# initramfs once. The stub prints no version, so the kernel's postinst.d
# hook takes update-initramfs for absent and does nothing.
#
# $2: the native tools tree (see native-tools.sh).
set -euo pipefail
r=$1
chroot "$r" dpkg-divert --local --rename --divert /usr/sbin/update-initramfs.halo-image \
	--add /usr/sbin/update-initramfs >/dev/null
mkdir -p "$r/usr/sbin"
cat >"$r/usr/sbin/update-initramfs" <<'STUB'
#!/bin/sh
# halo image build (image/base/essential-hook.sh): no initramfs until the
# customize hook builds it once.
exit 0
STUB
chmod 0755 "$r/usr/sbin/update-initramfs"

# Byte-compilation, depmod, update-ca-certificates and grep by the build
# machine's own programs from $2 (native-tools.sh; the customize hook
# removes them).
bash "$(dirname "$0")/native-tools.sh" install "$r" "$2"
