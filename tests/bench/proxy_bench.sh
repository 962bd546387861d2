#!/usr/bin/env bash
# Proxy benchmark (not a test): wrk against halo (io_uring and epoll) and
# against Debian's HAProxy configured the same way: one worker each, the same
# three nginx-light backends on loopback, a 1 KiB page, keep-alive and
# `Connection: close`. Prints a Markdown table of req/s, p50/p99 latency and
# resident memory (idle, and with 1,000 open client connections).
#
#   bash tests/bench/proxy_bench.sh            # uses target/release/halo
#   HALO_BIN=... DURATION=10s CONNS=50 bash tests/bench/proxy_bench.sh
#   IOS="epoll uring" bash tests/bench/proxy_bench.sh   # driver order (default uring epoll)
#
# Bounded: every wrk run is -t1 -c$CONNS -d$DURATION; every process it
# starts is killed by pid on exit. Needs nginx-light, haproxy, wrk, python3.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
HALO_BIN=${HALO_BIN:-$root/target/release/halo}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
OPEN_CONNS=${OPEN_CONNS:-1000}
BASE_PORT=${BASE_PORT:-18080}
# 1,000 client connections plus as many to the servers, per process.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

. "$(dirname "$0")/lib.sh"
bench_init bench

# === three nginx backends ===
start_backends

PROXY_PORT=$((BASE_PORT + 10))

halo_conf() {  # io
  cat > "$work/halo-$1.toml" <<EOF
[global]
control_socket = "$work/halo-$1.sock"
# Access lines are info level; warn keeps the benchmark free of logging I/O,
# as the HAProxy side below has no log target.
log_level = "warn"

[proxy.web]
bind = ["127.0.0.1:$PROXY_PORT"]
io = "$1"
workers = 1
balance = "roundrobin"
retries = 3
$(halo_servers)
[proxy.web.timeouts]
connect = "5s"
client = "30s"
server = "30s"
keep_alive = "10s"
[proxy.web.health]
type = "http"
path = "/health"
interval = "2s"
rise = 2
fall = 3
EOF
}

cat > "$work/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    option forwardfor
    option http-keep-alive
    retries 3
    option redispatch
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 10s
    timeout http-request 10s
frontend web
    bind 127.0.0.1:$PROXY_PORT
    default_backend web
backend web
    balance roundrobin
    option httpchk GET /health
    server web1 127.0.0.1:$((BASE_PORT + 1)) check inter 2000 rise 2 fall 3
    server web2 127.0.0.1:$((BASE_PORT + 2)) check inter 2000 rise 2 fall 3
    server web3 127.0.0.1:$((BASE_PORT + 3)) check inter 2000 rise 2 fall 3
EOF

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# Open N client connections, each carrying one keep-alive request, and hold
# them while the proxy's RSS is read; prints the RSS in KiB.
rss_with_conns() {  # pid
  python3 - "$1" "$PROXY_PORT" "$OPEN_CONNS" <<'EOF'
import socket, sys, time
pid, port, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /1k.html HTTP/1.1\r\nHost: bench\r\n\r\n")
    socks.append(s)
for s in socks:
    got = b""
    while b"\r\n\r\n" not in got or len(got) < 1024:
        got += s.recv(65536)
time.sleep(0.5)
with open(f"/proc/{pid}/status") as f:
    print(next(l.split()[1] for l in f if l.startswith("VmRSS:")))
for s in socks:
    s.close()
EOF
}

# wrk prints "Requests/sec: N" and, with --latency, "50% 1.23ms" lines.
bench() {  # name extra-header
  local out
  if [ -n "$2" ]; then
    out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency -H "$2" "http://127.0.0.1:$PROXY_PORT/1k.html")
  else
    out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$PROXY_PORT/1k.html")
  fi
  local rps p50 p99 errs
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errs=$(grep -E "Non-2xx|Socket errors" <<<"$out" | tr '\n' ' ' || true)
  echo "$rps|$p50|$p99|$errs"
}

run_target() {  # label, command...
  local label=$1; shift
  "$@" > "$work/$label.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  wait_port "$PROXY_PORT" || { cat "$work/$label.log" >&2; return 1; }
  sleep 2   # first health checks
  local idle ka cl open
  idle=$(rss "$pid")
  # Warm-up (pools, page cache), not reported.
  wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$PROXY_PORT/1k.html" > /dev/null
  ka=$(bench "$label" "")
  cl=$(bench "$label" "Connection: close")
  open=$(rss_with_conns "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  # Let the port go before the next target binds it.
  sleep 1
  IFS='|' read -r ka_rps ka_p50 ka_p99 ka_err <<<"$ka"
  IFS='|' read -r cl_rps cl_p50 cl_p99 cl_err <<<"$cl"
  echo "| $label | $ka_rps | $ka_p50 | $ka_p99 | $cl_rps | $cl_p50 | $cl_p99 | $((idle / 1024)) MiB | $((open / 1024)) MiB |"
  [ -z "$ka_err$cl_err" ] || echo "<!-- $label: $ka_err $cl_err -->"
  echo "$label $ka_rps $cl_rps" >> "$work/summary"
}

echo "wrk -t1 -c$CONNS -d$DURATION --latency http://127.0.0.1:$PROXY_PORT/1k.html (keep-alive; and with -H 'Connection: close'); $OPEN_CONNS open connections for the memory column"
echo "kernel $(uname -r), $(nproc) cores, $(haproxy -v | head -1), $(nginx -v 2>&1)"
echo
echo "| proxy | keep-alive req/s | p50 | p99 | close req/s | p50 | p99 | RSS idle | RSS, $OPEN_CONNS conns |"
echo "|---|---|---|---|---|---|---|---|---|"
for io in ${IOS:-uring epoll}; do
  halo_conf "$io"
  run_target "halo-$io" "$HALO_BIN" run -c "$work/halo-$io.toml"
done
run_target haproxy haproxy -db -f "$work/haproxy.cfg"
echo
awk '
  { ka[$1] = $2; cl[$1] = $3 }
  END {
    for (t in ka) if (t != "haproxy" && ka["haproxy"] > 0)
      printf "%s / haproxy: keep-alive %.2fx, close %.2fx\n", t, ka[t] / ka["haproxy"], cl[t] / cl["haproxy"]
  }' "$work/summary"
