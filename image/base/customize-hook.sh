#!/bin/bash
# mmdebstrap --customize-hook for the halo Pi image: runs after every package
# is installed, with the root file system directory as $1. Pi boot settings,
# the initramfs with the image's module list, and what must differ per card
# (SSH host keys, machine-id) removed.
set -euo pipefail
r=$1
here=$(cd "$(dirname "$0")" && pwd)
in_root() { chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

install -m 0644 "$here/fstab" "$r/etc/fstab"
install -m 0644 "$here/initramfs-modules" "$r/etc/initramfs-tools/modules"
echo halo >"$r/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\thalo\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts"

# raspi-firmware writes cmdline.txt from these. Fixed interface names
# (net.ifnames=0): eth0 on every Pi model and in qemu, as halo.toml says.
sed -i -e 's|^#\?ROOTPART=.*|ROOTPART=LABEL=RASPIROOT|' "$r/etc/default/raspi-firmware"
grep -q '^ROOTPART=LABEL=RASPIROOT' "$r/etc/default/raspi-firmware" ||
	echo 'ROOTPART=LABEL=RASPIROOT' >>"$r/etc/default/raspi-firmware"
echo "net.ifnames=0" >"$r/etc/default/raspi-extra-cmdline"

# The initramfs with the module list; raspi-firmware's post-update hook
# copies it, the kernel and the device trees to /boot/firmware and writes
# config.txt and cmdline.txt.
in_root update-initramfs -u -k all

# Root's password locked: SSH keys only (halo-firstboot installs them).
in_root usermod -p '!' root
# Per-card identity is made at first boot.
rm -f "$r"/etc/ssh/ssh_host_*
: >"$r/etc/machine-id"
rm -f "$r/var/lib/dbus/machine-id"
