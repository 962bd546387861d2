# shellcheck shell=bash
# Sourced by the test scripts. install_listed LABEL FILE...: apt-get install
# every package named in the FILEs (one per line, `#` comments) that is not
# installed yet. A policy-rc.d keeps services from those packages from
# starting on the host while they install (tests start their own instances
# inside namespaces); one already in place is left alone.

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

install_listed() {
  local label=$1; shift
  local want=() pkg
  while read -r pkg; do
    pkg=${pkg%%#*}; pkg=${pkg// /}
    [ -n "$pkg" ] || continue
    have_pkg "$pkg" || want+=("$pkg")
  done < <(cat "$@" 2>/dev/null)
  [ ${#want[@]} -gt 0 ] || return 0
  echo "$label: installing ${want[*]}"
  local own_policy= rc=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq || rc=$?
  if [ $rc -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends "${want[@]}" >/dev/null || rc=$?
  fi
  [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
  return $rc
}
