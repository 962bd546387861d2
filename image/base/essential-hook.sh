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
# The SSH host keys, made by openssh-server's postinst only to be deleted,
# are not made at all (placeholders below).
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

# openssh-server's postinst makes the three SSH host keys with an emulated
# ssh-keygen (about a minute, most of it RSA), and the customize hook
# deletes them again: each card makes its own at first boot. The postinst
# makes a key only where no file of that name is, so empty placeholders
# stand in for them until the customize hook removes them with the rest.
mkdir -p "$r/etc/ssh"
for t in rsa ecdsa ed25519; do
	: >"$r/etc/ssh/ssh_host_${t}_key"
done

# Byte-compilation, depmod, update-ca-certificates, grep and systemd-hwdb by the build
# machine's own programs from $2 (native-tools.sh; the customize hook
# removes them).
bash "$(dirname "$0")/native-tools.sh" install "$r" "$2"
