#!/usr/bin/env bash
# Install everything the test suite and `halo lab` need on Debian 12, as root.
# Idempotent: packages already present are skipped, so a second run is quick.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: must run as root (apt-get, network namespaces)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
want=()
while read -r pkg; do
  pkg=${pkg%%#*}; pkg=${pkg// /}
  [ -n "$pkg" ] || continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || want+=("$pkg")
done < <(cat "$here"/apt-packages.txt "$here"/*/apt-packages.txt 2>/dev/null)

if [ ${#want[@]} -gt 0 ]; then
  echo "install-deps: installing ${want[*]}"
  # Services from these packages must not start on the host: tests start
  # their own instances inside namespaces.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
fi

# A Rust toolchain: rustup's if present, otherwise Debian's.
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    :
  else
    echo "install-deps: no cargo found; installing Debian's rustc-web and cargo-web"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends rustc-web cargo-web >/dev/null
  fi
fi
echo "install-deps: ok"
