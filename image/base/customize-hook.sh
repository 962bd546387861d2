#!/bin/bash
# mmdebstrap --customize-hook for the halo Pi image: runs after every package
# is installed, with the root file system directory as $1: Pi boot settings
# (config.txt, cmdline.txt), the initramfs (built here, once), a locked root,
# and what must differ per card (SSH host keys, machine-id) removed.
set -euo pipefail
r=$1
here=$(cd "$(dirname "$0")" && pwd)
in_root() { chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

install -m 0644 "$here/fstab" "$r/etc/fstab"
cmp -s "$here/initramfs-modules" "$r/etc/initramfs-tools/modules" ||
	{ echo "customize-hook: /etc/initramfs-tools/modules was replaced during the install" >&2; exit 1; }
echo halo >"$r/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\thalo\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts"

# raspi-firmware writes config.txt and cmdline.txt from these settings
# whenever the kernel or initramfs changes (on the Pi too). Root by label;
# consoles on HDMI and the Pi 3/4 UART (ttyS1, the last one gets boot logs);
# no CMA pool: the load balancer is headless (and the Pi 4 must not have the
# 64M default). cmdline.txt always has net.ifnames=0: eth0 on every model.
cat >>"$r/etc/default/raspi-firmware" <<'CONF'

# halo image (image/base/customize-hook.sh)
ROOTPART=LABEL=RASPIROOT
CONSOLES="tty0 ttyS1,115200"
CMA=0
CONF

# The native tools (essential-hook.sh, native-tools.sh) away again and the
# packages' own python3.13, depmod, grep and update-ca-certificates back,
# before the initramfs (mkinitramfs copies programs and looks at /lib64);
# checks that the card's python3 takes the compiled files as its own.
bash "$here/native-tools.sh" remove "$r"

# The initramfs, built once (essential-hook.sh diverted update-initramfs to a
# stub while the packages were installed): the real update-initramfs back,
# then `-c` for the one kernel, as the kernel's postinst would have run it.
# Its post-update hook runs raspi-firmware's kernel hook, which copies the
# kernel, initrd and device trees to /boot/firmware and writes config.txt
# and cmdline.txt from the settings above.
rm -f "$r/usr/sbin/update-initramfs"
in_root dpkg-divert --local --rename --divert /usr/sbin/update-initramfs.halo-image \
	--remove /usr/sbin/update-initramfs >/dev/null
kernels=("$r"/lib/modules/*)
[ ${#kernels[@]} -eq 1 ] || { echo "customize-hook: expected one kernel in /lib/modules, found: ${kernels[*]}" >&2; exit 1; }
in_root update-initramfs -c -k "${kernels[0]##*/}"
[ -f "$r/boot/initrd.img-${kernels[0]##*/}" ] ||
	{ echo "customize-hook: update-initramfs made no /boot/initrd.img-${kernels[0]##*/}" >&2; exit 1; }
# As a kernel upgrade would (only copies files; the hook above ran it too).
in_root env DEB_MAINT_PARAMS=configure /etc/kernel/postinst.d/z50-raspi-firmware
grep -q 'root=LABEL=RASPIROOT' "$r/boot/firmware/cmdline.txt" ||
	{ echo "customize-hook: cmdline.txt does not name LABEL=RASPIROOT" >&2; exit 1; }

# The build's dpkg path-exclude options (halo-image: no docs, man pages or
# translations unpacked, fewer files to write under qemu-user) were for the
# build only: on the card dpkg installs packages whole again, as on any
# Debian system. The copyright files were kept.
sed -i '/^path-\(exclude\|include\)=/d' "$r/etc/dpkg/dpkg.cfg.d/99mmdebstrap"

# mmdebstrap leaves the build machine's resolv.conf behind; a card's
# nameservers come from node.toml (dns), written by halo-firstboot.
printf '# halo image: halo-firstboot writes nameservers from halo/node.toml (dns).\n' >"$r/etc/resolv.conf"

# Root's password locked: SSH keys only (halo-firstboot installs them).
in_root usermod -p '!' root
# Per-card identity is made at first boot. (The host keys here are the
# essential hook's empty placeholders: openssh-server's postinst made none.)
for t in rsa ecdsa ed25519; do
	[ -f "$r/etc/ssh/ssh_host_${t}_key" ] && [ ! -s "$r/etc/ssh/ssh_host_${t}_key" ] ||
		{ echo "customize-hook: /etc/ssh/ssh_host_${t}_key is not the essential hook's placeholder" >&2; exit 1; }
done
rm -f "$r"/etc/ssh/ssh_host_*
: >"$r/etc/machine-id"
rm -f "$r/var/lib/dbus/machine-id"
