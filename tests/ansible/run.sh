#!/usr/bin/env bash
# The ansible/ tests: lint, syntax, and the four-host cluster (site.yml, a
# second run, rolling upgrade under load, failover). Run as root:
#   bash tests/ansible/run.sh [pytest args]
# The first run builds the hosts' Debian tree (cached under
# /var/cache/halo-tests/ansible-root-*); HALO_BIN picks the halo binary to
# package (default: target/release/halo, built when missing).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
missing=()
while read -r pkg; do
  pkg=${pkg%%#*}; pkg=${pkg// /}
  [ -n "$pkg" ] || continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < tests/ansible/apt-packages.txt
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/ansible: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ -z "${HALO_BIN:-}" ]; then
  [ -x target/release/halo ] || cargo build --release --locked -p halo
  export HALO_BIN=$root/target/release/halo
fi
# Bounded: the cold run (tree build included) takes about 10 minutes.
exec timeout 1500 /usr/bin/python3 -m pytest -q -p no:cacheprovider -rA tests/ansible "$@"
