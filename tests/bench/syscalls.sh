#!/usr/bin/env bash
# Syscalls per proxied request (not a test): strace -c on the proxy while
# wrk drives it, for halo's epoll and io_uring drivers, HAProxy and nginx
# (`proxy_pass` with upstream keep-alive), each with one worker in front of
# the same three nginx-light on loopback (1 KiB page, keep-alive to the
# servers). Prints each strace summary, wrk's count and the calls per
# request. CLOSE=1: the client sends `Connection: close` (a new client
# connection per request; what the proxy does per connection shows).
#
#   bash tests/bench/syscalls.sh                      # target/release/halo
#   CLOSE=1 TARGETS="halo-uring nginx" bash tests/bench/syscalls.sh
#   HALO_BIN=... SECONDS_UNDER_STRACE=4 bash tests/bench/syscalls.sh
#
# Bounded: one wrk -t1 -c$CONNS run per proxy; every process it starts is
# killed by pid on exit. Needs nginx-light, haproxy, wrk, strace.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
HALO_BIN=${HALO_BIN:-$root/target/release/halo}
DUR=${SECONDS_UNDER_STRACE:-4}
BASE_PORT=${BASE_PORT:-28080}
CONNS=${CONNS:-50}
TARGETS=${TARGETS:-halo-epoll halo-uring haproxy nginx}
PROXY=$((BASE_PORT + 10))
hdr=()
[ -n "${CLOSE:-}" ] && hdr=(-H "Connection: close")

. "$(dirname "$0")/lib.sh"
bench_init syscalls
start_backends

for io in epoll uring; do halo_toml "$work/halo-$io.toml" "$io"; done
haproxy_cfg "$work/haproxy.cfg" "option forwardfor"
nginx_proxy_conf "$work/proxy-nginx" "$PROXY"

one() {  # label, command...
  local label=$1; shift
  "$@" > "$work/$label.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  wait_port "$PROXY"
  wrk -t1 -c"$CONNS" -d1s "${hdr[@]}" "http://127.0.0.1:$PROXY/1k.html" > /dev/null
  strace -c -f -p "$pid" -o "$work/$label.strace" &
  local sp=$!
  sleep 0.5
  local out n
  out=$(wrk -t1 -c"$CONNS" -d"${DUR}"s "${hdr[@]}" "http://127.0.0.1:$PROXY/1k.html")
  sleep 0.2
  kill -INT "$sp"; wait "$sp" 2>/dev/null || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  sleep 0.5
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "== $label: $n requests under strace${CLOSE:+ (Connection: close)}"
  # The summary with a per-request column (calls, errors).
  awk -v n="$n" '
    /^-/ || /syscall/ {print; next}
    NF >= 5 && $4 ~ /^[0-9]+$/ {
      err = (NF == 6) ? $5 : 0
      printf "%s   %6.3f/req", $0, $4 / n
      if (err) printf " (%.3f errors/req)", err / n
      printf "\n"
    }' "$work/$label.strace"
}
for t in $TARGETS; do
  case $t in
    halo-epoll | halo-uring)
      one "$t" "$HALO_BIN" run --config "$work/$t.toml" --socket "$work/$t.sock" ;;
    haproxy) one haproxy haproxy -f "$work/haproxy.cfg" -db ;;
    nginx) one nginx nginx -p "$work/proxy-nginx" -c "$work/proxy-nginx/nginx.conf" -e "$work/proxy-nginx/error.log" ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
done
