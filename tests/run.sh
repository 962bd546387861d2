#!/usr/bin/env bash
# halo's whole test suite. Run as root on Debian 12:  bash tests/run.sh
# It installs what it needs (tests/lib/install-deps.sh), builds halo, and runs
# unit tests, namespace integration tests (VRRP, proxy, keepalived interop),
# and the packaging tests. Stages can be picked: bash tests/run.sh unit vrrp
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(deps fmt unit integration packaging ansible image)
want() { local s; for s in "${stages[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

failed=()
stage() {
  local name=$1; shift
  echo
  echo "=== stage: $name ==="
  local t0=$SECONDS
  if "$@"; then
    echo "=== stage $name: ok ($((SECONDS - t0)) s) ==="
  else
    echo "=== stage $name: FAILED ($((SECONDS - t0)) s) ==="
    failed+=("$name")
  fi
}

if want deps; then
  bash tests/lib/install-deps.sh
fi

# The image base and the Ansible hosts' tree take minutes when not cached
# and little of this machine's CPU beside the stages before theirs (one
# emulated dpkg at a time; downloads): built meanwhile, in the background
# (tests/lib/prebuild.sh; the image stage waits for it).
# Two jobs: the Ansible tree (~30 s) is ready long before the image base
# (~15-20 min cold), so the ansible stage runs before the image stage and
# the image base gets those minutes too (a fresh machine's image stage
# waited 115 s for it when the ansible stage came last).
prebuild_image_pid= prebuild_ansible_pid=
mkdir -p build
if want image; then
  bash tests/lib/prebuild.sh image >build/prebuild.log 2>&1 &
  prebuild_image_pid=$!
fi
if want ansible; then
  bash tests/lib/prebuild.sh ansible >build/prebuild-ansible.log 2>&1 &
  prebuild_ansible_pid=$!
fi

build() {
  cargo build --release --locked -p halo
}
stage build build
export HALO_BIN="$root/target/release/halo"
# nginx-light is installed above: a test that needs it fails without it
# instead of skipping (daemon/tests/health_nginx.rs, tests/health).
export HALO_REQUIRE_NGINX=1
# What was there before the tests (a student's lab, say), so that only what
# this run leaves behind counts (stage cleanup, at the end).
netns_before=$(ip netns list 2>/dev/null | awk '{print $1}' | grep '^halo-' | sort || true)

if want fmt; then
  lint() { cargo fmt --all -- --check && cargo clippy --locked --all-targets -- -D warnings; }
  stage lint lint
fi

if want unit; then
  stage unit cargo test --locked -p halo
fi

# The packaging stage's cold builds (the aarch64 binary and unit tests, the
# bookworm chroots) while the integration tests wait on their timers: after
# the unit stage, whose cargo would otherwise wait on the same target
# directory's lock (tests/lib/prebuild.sh).
prebuild_pkg_pid=
if want packaging || want image; then
  prebuild_pkg=(aarch64)
  want packaging && prebuild_pkg+=(bookworm)
  mkdir -p build
  bash tests/lib/prebuild.sh "${prebuild_pkg[@]}" >build/prebuild-packaging.log 2>&1 &
  prebuild_pkg_pid=$!
fi
# waited NAME PID LOG: wait for a background prebuild, show how long and its log.
waited() {
  local t0=$SECONDS
  wait "$2" || true
  echo
  echo "=== $1 built in the background (waited $((SECONDS - t0)) s for them) ==="
  tail -n 40 "$3"
}

# pytest areas under tests/; `bash tests/run.sh vrrp ops` runs just those.
areas=(vrrp ops proxy health import lab hooks admin l4)
sel=()
for a in "${areas[@]}"; do
  if want integration || want "$a"; then
    [ -d "tests/$a" ] && sel+=("tests/$a")
  fi
done
if [ ${#sel[@]} -gt 0 ]; then
  stage integration /usr/bin/python3 -m pytest -q -p no:cacheprovider "${sel[@]}"
fi

[ -z "$prebuild_pkg_pid" ] || waited "packaging's builds" "$prebuild_pkg_pid" build/prebuild-packaging.log
if want packaging && [ -x tests/packaging/run.sh ]; then
  stage packaging bash tests/packaging/run.sh
fi

[ -z "$prebuild_ansible_pid" ] || waited "Ansible hosts' tree" "$prebuild_ansible_pid" build/prebuild-ansible.log
if want ansible && [ -x tests/ansible/run.sh ]; then
  stage ansible bash tests/ansible/run.sh
fi

[ -z "$prebuild_image_pid" ] || waited "image base" "$prebuild_image_pid" build/prebuild.log
if want image && [ -x tests/image/run.sh ]; then
  stage image bash tests/image/run.sh
fi

# Every test removes the namespaces it made, also when it fails: a lab left
# behind by this run (any `halo-*` namespace that was not there before) is
# a failure of the suite, named here.
leftover() {
  local now
  now=$(ip netns list 2>/dev/null | awk '{print $1}' | grep '^halo-' | sort || true)
  now=$(comm -13 <(printf '%s\n' "$netns_before") <(printf '%s\n' "$now") | grep . || true)
  if [ -n "$now" ]; then
    echo "namespaces left behind by the tests:"
    printf '  %s\n' $now
    "$HALO_BIN" lab list || true
    return 1
  fi
  echo "no lab namespace left behind"
}
stage cleanup leftover

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED stages: ${failed[*]}"
  exit 1
fi
echo "all stages passed"
