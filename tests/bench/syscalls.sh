#!/usr/bin/env bash
# Syscalls per proxied request (not a test): strace -c on the proxy while
# wrk drives it, for halo's epoll and io_uring drivers and for HAProxy, each
# with one worker in front of the same three nginx-light on loopback (1 KiB
# page, keep-alive both sides). Prints each strace summary and wrk's count.
#
#   bash tests/bench/syscalls.sh                      # target/release/halo
#   HALO_BIN=... SECONDS_UNDER_STRACE=4 bash tests/bench/syscalls.sh
#
# Bounded: one wrk -t1 -c50 run per proxy; every process it starts is killed
# by pid on exit. Needs nginx-light, haproxy, wrk, strace.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
HALO_BIN=${HALO_BIN:-$root/target/release/halo}
DUR=${SECONDS_UNDER_STRACE:-4}
BASE_PORT=${BASE_PORT:-28080}
PROXY=$((BASE_PORT + 10))

. "$(dirname "$0")/lib.sh"
bench_init syscalls
start_backends

for io in epoll uring; do halo_toml "$work/halo-$io.toml" "$io"; done
haproxy_cfg "$work/haproxy.cfg"

one() {  # label, command...
  local label=$1; shift
  "$@" > "$work/$label.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  wait_port "$PROXY"
  wrk -t1 -c50 -d1s "http://127.0.0.1:$PROXY/1k.html" > /dev/null
  strace -c -f -p "$pid" -o "$work/$label.strace" &
  local sp=$!
  sleep 0.5
  echo "== $label: $(wrk -t1 -c50 -d"${DUR}"s "http://127.0.0.1:$PROXY/1k.html" | grep 'requests in')"
  kill -INT "$sp"; wait "$sp" 2>/dev/null || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  sleep 0.5
  grep -E "syscall|-----|sendto|recvfrom|epoll_wait|io_uring|writev|readv|total" "$work/$label.strace"
}
one halo-epoll "$HALO_BIN" run --config "$work/halo-epoll.toml" --socket "$work/e.sock"
one halo-uring "$HALO_BIN" run --config "$work/halo-uring.toml" --socket "$work/u.sock"
one haproxy haproxy -f "$work/haproxy.cfg" -db
