#!/usr/bin/env bash
# Build (or reuse) the Debian 12 amd64 root filesystem the ansible tests boot
# with systemd-nspawn -b (one container per host, see cluster.py).
#
#   bash tests/ansible/build-image.sh   -> prints the cache directory
#
# /var/cache/halo-tests/ansible-root-KEY holds root/ (the file system, used
# read-only as the lower layer of each host's overlayfs) and id_ed25519, the
# test SSH key whose public half is root's authorized key. KEY is a hash of
# this script: changing the package list or the set-up below builds a new
# tree; an unchanged script reuses the old one.
#
# The tree is a plain Debian host as Ansible expects one (systemd as init,
# sshd, python3 with python3-apt), with what the roles install already in it:
# the hosts sit on a bridge with no way out, so apt cannot download anything
# there. The roles still declare those packages; apt finds them installed.
# Each host's name and address are written into its own overlay at boot.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
key=$(sha256sum "$here/build-image.sh" | cut -c1-16)
cache_root=${HALO_TEST_CACHE:-/var/cache/halo-tests}
cache=$cache_root/ansible-root-$key
# One build at a time (tests/lib/prebuild.sh may be building it in the
# background): a second caller waits, then finds the tree.
mkdir -p "$cache_root"
exec 9>"$cache_root/.ansible-root.lock"
flock 9
if [ -x "$cache/root/usr/sbin/sshd" ] && [ -s "$cache/id_ed25519" ]; then
  echo "$cache"
  exit 0
fi
log() { echo "build-image: $*" >&2; }
for tool in mmdebstrap ssh-keygen; do
  command -v "$tool" >/dev/null || { log "$tool missing (tests/ansible/apt-packages.txt)"; exit 1; }
done

packages=(
  systemd-sysv dbus
  openssh-server python3 python3-apt sudo
  iproute2 iputils-ping procps ca-certificates curl
  # what the roles install (common: nftables, chrony; nginx_backend: nginx-light)
  nftables chrony nginx-light
)
mkdir -p "$cache_root"
work=$(mktemp -d "$cache_root/.ansible-root.XXXXXX")
trap 'rm -rf "$work"' EXIT
ssh-keygen -q -t ed25519 -N '' -C halo-ansible-test -f "$work/id_ed25519"

log "mmdebstrap bookworm amd64 (${#packages[@]} packages)"
incl=$(IFS=,; echo "${packages[*]}")
bootstrap() {
  rm -rf "$work/root"
  mmdebstrap --variant=minbase --include="$incl" \
    --aptopt='Acquire::Retries "5"' \
    --customize-hook='mkdir -p -m 0700 "$1/root/.ssh"' \
    --customize-hook="cp '$work/id_ed25519.pub' \"\$1/root/.ssh/authorized_keys\"" \
    --customize-hook='chmod 0600 "$1/root/.ssh/authorized_keys"' \
    --customize-hook='chroot "$1" systemctl enable systemd-networkd.service' \
    --customize-hook='chroot "$1" systemctl disable nginx.service' \
    --customize-hook='chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer' \
    --customize-hook=': > "$1/etc/machine-id"; rm -f "$1/var/lib/dbus/machine-id"' \
    bookworm "$work/root" http://deb.debian.org/debian
}
# The whole download comes from the mirror: apt retries each file, and the
# bootstrap as a whole is tried again (a mirror mid-sync) at most twice.
for try in 1 2 3; do
  bootstrap && break
  [ $try -lt 3 ] || { log "mmdebstrap failed $try times"; exit 1; }
  log "mmdebstrap failed (try $try of 3); trying again in $((try * 30)) s"
  sleep $((try * 30))
done

rm -rf "$cache"
mkdir "$cache"
mv "$work/root" "$work/id_ed25519" "$work/id_ed25519.pub" "$cache/"
# Trees of earlier versions of this script are no longer used.
find "$cache_root" -maxdepth 1 -name 'ansible-root-*' ! -path "$cache" -exec rm -rf {} +
log "built $cache"
echo "$cache"
