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
# shellcheck source=../lib/apt.sh
source "$root/tests/lib/apt.sh"
install_listed tests/ansible tests/ansible/apt-packages.txt
if [ -z "${HALO_BIN:-}" ]; then
  [ -x target/release/halo ] || cargo build --release --locked -p halo
  export HALO_BIN=$root/target/release/halo
fi
# Bounded against a hang: the cold run (tree build included) takes about 10
# minutes here, and may take several times that on a loaded CI machine.
exec timeout 2700 /usr/bin/python3 -m pytest -q -p no:cacheprovider -rA tests/ansible "$@"
