# shellcheck shell=bash
# Sourced by the test scripts. install_listed LABEL FILE...: apt-get install
# every package named in the FILEs (one per line, `#` comments) that is not
# installed yet. A policy-rc.d keeps services from those packages from
# starting on the host while they install (tests start their own instances
# inside namespaces); one already in place is left alone.
#
# Downloads from the mirrors are the one thing here that may fail for no
# fault of ours on a fresh machine: every apt-get of the sourcing script and
# of what it runs (daemon/debian/build-aarch64.sh's own apt-get, say) reads
# tests/lib/apt.conf (Acquire::Retries) through APT_CONFIG, unless the caller
# set APT_CONFIG already; and apt_retry runs an apt-get command again, after
# a pause, when it fails as a whole (an index that changed under a mirror
# sync fails `update` even after apt's own retries).

if [ -z "${APT_CONFIG:-}" ]; then
  APT_CONFIG=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/apt.conf
  export APT_CONFIG
fi

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# apt_retry CMD...: run CMD (an apt-get command line) up to 3 times.
apt_retry() {
  local try rc=0
  for try in 1 2 3; do
    "$@" && return 0
    rc=$?
    [ $try -lt 3 ] || break
    echo "apt: '$*' failed (exit $rc, try $try of 3); trying again in $((try * 20)) s" >&2
    sleep $((try * 20))
  done
  return $rc
}

install_listed() {
  local label=$1; shift
  local want=() pkg list
  # A plain redirection, not `< <(cat ...)`: process substitution needs
  # /dev/fd, which a chroot without /proc lacks, and it hid a missing list.
  for list in "$@"; do
    while read -r pkg; do
      pkg=${pkg%%#*}; pkg=${pkg// /}
      [ -n "$pkg" ] || continue
      have_pkg "$pkg" || want+=("$pkg")
    done < "$list"
  done
  [ ${#want[@]} -gt 0 ] || return 0
  # A package named with its architecture (libc6:arm64) installs only once
  # dpkg knows that architecture: a fresh Debian has none but its own, and
  # apt-get then says "Unable to locate package". The update below reads the
  # new architecture's index.
  local arch native
  native=$(dpkg --print-architecture)
  for pkg in "${want[@]}"; do
    [[ $pkg == *:* ]] || continue
    arch=${pkg##*:}
    [ "$arch" = "$native" ] && continue
    dpkg --print-foreign-architectures | grep -qx "$arch" || dpkg --add-architecture "$arch"
  done
  echo "$label: installing ${want[*]}"
  local own_policy= rc=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; own_policy=1
  fi
  # update again before each install try: a failed install may be an index
  # that went stale while the mirror synced.
  install_try() {
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "$@" >/dev/null
  }
  apt_retry install_try "${want[@]}" || rc=$?
  [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
  return $rc
}
