#!/usr/bin/env bash
# A/B of two halo binaries (not a test): the same proxy config, alternating
# A and B for ROUNDS rounds of `wrk -t1 -c50 -d8s` keep-alive against one
# worker of driver IO (uring or epoll), three nginx-light on loopback, a
# 1 KiB page. Alternating spreads the machine's drift over both.
#
#   bash tests/bench/ab.sh OLD_BINARY NEW_BINARY [uring|epoll]
#   ROUNDS=5 bash tests/bench/ab.sh ...
#   CLOSE=1 bash tests/bench/ab.sh ...    # `Connection: close`: a new client
#                                         # connection per request
#
# Bounded: ROUNDS x 2 wrk runs of 8 s; every process it starts is killed by
# pid on exit. Needs nginx-light and wrk.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 A_BINARY B_BINARY [uring|epoll]" >&2; exit 2; }
A=$1 B=$2 IO=${3:-uring}
ROUNDS=${ROUNDS:-3}
BASE_PORT=${BASE_PORT:-28180}
PROXY=$((BASE_PORT + 10))
hdr=()
[ -n "${CLOSE:-}" ] && hdr=(-H "Connection: close")

. "$(dirname "$0")/lib.sh"
bench_init ab
start_backends
halo_toml "$work/halo.toml" "$IO"

cpu_ticks() {  # pid: utime + stime of the whole process, in clock ticks
  sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

for round in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    bin=$A; [ "$side" = B ] && bin=$B
    "$bin" run --config "$work/halo.toml" --socket "$work/h.sock" > "$work/$side.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_port "$PROXY"
    wrk -t1 -c50 -d2s "${hdr[@]}" "http://127.0.0.1:$PROXY/1k.html" > /dev/null
    # The proxy's own CPU (user + system ticks of every thread) over the
    # measured run: moves far less than req/s on a shared machine.
    t0=$(cpu_ticks "$pid")
    out=$(wrk -t1 -c50 -d8s --latency "${hdr[@]}" "http://127.0.0.1:$PROXY/1k.html")
    t1=$(cpu_ticks "$pid")
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    echo "round $round $side $rps req/s, p99 $p99, $(awk -v t="$((t1 - t0))" -v n="$n" 'BEGIN { printf "%.1f", t * 1e4 / n }') us CPU per request"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    sleep 0.5
  done
done
