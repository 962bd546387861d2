#!/usr/bin/env bash
# Build (or reuse) the amd64 Debian 12 VM image the ansible tests boot with qemu/KVM.
#
#   bash tests/ansible/build-image.sh   -> prints the cache directory
#
# The directory /var/cache/halo-tests/ansible-vm-KEY holds vmlinuz, initrd.img,
# rootfs.qcow2 (ext4, whole disk, no partition table) and the test SSH key
# id_ed25519. KEY is a hash of this script, so changing the package list or
# the set-up below builds a new image; an unchanged script reuses the old one.
#
# The image is a plain Debian host as Ansible expects one (systemd as init,
# sshd, python3 with python3-apt), with what the roles install already in it:
# the VMs sit on a bridge with no way out, so apt cannot download anything
# there. The roles still declare those packages; apt finds them installed.
# Per-host identity comes from the kernel command line at boot:
#   ip=ADDR:::NETMASK:HOSTNAME:eth0:off  (systemd-network-generator -> networkd)
#   systemd.hostname=HOSTNAME
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
key=$(sha256sum "$here/build-image.sh" | cut -c1-16)
cache=/var/cache/halo-tests/ansible-vm-$key
if [ -s "$cache/rootfs.qcow2" ] && [ -s "$cache/vmlinuz" ] && [ -s "$cache/initrd.img" ] && [ -s "$cache/id_ed25519" ]; then
  echo "$cache"
  exit 0
fi
log() { echo "build-image: $*" >&2; }
for tool in mmdebstrap mkfs.ext4 qemu-img ssh-keygen; do
  command -v "$tool" >/dev/null || { log "$tool missing (tests/ansible/apt-packages.txt)"; exit 1; }
done

packages=(
  systemd-sysv udev kmod dbus
  linux-image-cloud-amd64 initramfs-tools
  openssh-server python3 python3-apt sudo
  iproute2 iputils-ping procps ca-certificates curl
  # what the roles install (common: nftables, systemd-timesyncd; nginx_backend: nginx-light)
  nftables systemd-timesyncd nginx-light
)
work=$(mktemp -d /var/tmp/halo-ansible-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
ssh-keygen -q -t ed25519 -N '' -C halo-ansible-test -f "$work/id_ed25519"

log "mmdebstrap bookworm amd64 (${#packages[@]} packages)"
incl=$(IFS=,; echo "${packages[*]}")
mmdebstrap --variant=minbase --include="$incl" \
  --customize-hook='echo "/dev/vda / ext4 defaults,errors=remount-ro 0 1" > "$1/etc/fstab"' \
  --customize-hook='mkdir -p -m 0700 "$1/root/.ssh"' \
  --customize-hook="cp '$work/id_ed25519.pub' \"\$1/root/.ssh/authorized_keys\"" \
  --customize-hook='chmod 0600 "$1/root/.ssh/authorized_keys"' \
  --customize-hook='chroot "$1" systemctl enable systemd-networkd.service systemd-network-generator.service' \
  --customize-hook='chroot "$1" systemctl disable nginx.service' \
  --customize-hook='chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer' \
  --customize-hook='printf "[Match]\nName=eth0\n\n[Network]\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n" > "$1/etc/systemd/network/99-eth0-fallback.network"' \
  --customize-hook=': > "$1/etc/machine-id"; rm -f "$1/var/lib/dbus/machine-id"' \
  --customize-hook='echo "localhost" > "$1/etc/hostname"' \
  --customize-hook='cp "$1"/boot/vmlinuz-* '"$work/vmlinuz"'; cp "$1"/boot/initrd.img-* '"$work/initrd.img" \
  bookworm "$work/root" http://deb.debian.org/debian

log "ext4 image"
mkfs.ext4 -q -L halo-vm -d "$work/root" "$work/rootfs.raw" 3G
qemu-img convert -O qcow2 "$work/rootfs.raw" "$work/rootfs.qcow2"
chmod 0644 "$work/vmlinuz" "$work/initrd.img"
mkdir -p "$cache.tmp"
mv "$work/vmlinuz" "$work/initrd.img" "$work/rootfs.qcow2" "$work/id_ed25519" "$work/id_ed25519.pub" "$cache.tmp/"
rm -rf "$cache"; mv "$cache.tmp" "$cache"
log "built $cache"
echo "$cache"
