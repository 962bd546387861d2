#!/usr/bin/env bash
# Proxy benchmark (not a test): wrk against halo (io_uring and epoll), against
# Debian's HAProxy and against nginx (`proxy_pass` with upstream keep-alive),
# configured the same way: one worker each, the same three nginx-light
# backends on loopback, a 1 KiB page, keep-alive and `Connection: close`.
# All four proxies run at once on their own ports; each round runs wrk
# against each of them in turn (alternating, so the machine's drift hits all
# alike), and the table gives the median of the rounds: req/s, p50/p99
# latency, resident memory (idle, and with 1,000 open client connections)
# and the ratios of halo to HAProxy and to nginx.
#
#   bash tests/bench/proxy_bench.sh            # uses target/release/halo
#   HALO_BIN=... DURATION=3s ROUNDS=5 CONNS=32 bash tests/bench/proxy_bench.sh
#   TARGETS="halo-epoll nginx" bash tests/bench/proxy_bench.sh
#
# Bounded: every wrk run is -t1 -c$CONNS -d$DURATION, ROUNDS x 2 runs per
# proxy; every process it starts is killed by pid on exit. Needs nginx-light,
# haproxy, wrk, python3.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
HALO_BIN=${HALO_BIN:-$root/target/release/halo}
DURATION=${DURATION:-3s}
ROUNDS=${ROUNDS:-5}
CONNS=${CONNS:-32}
OPEN_CONNS=${OPEN_CONNS:-1000}
BASE_PORT=${BASE_PORT:-18080}
TARGETS=${TARGETS:-halo-uring halo-epoll haproxy nginx}
# 1,000 client connections plus as many to the servers, per process.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

. "$(dirname "$0")/lib.sh"
bench_init bench

# === three nginx backends ===
start_backends

declare -A PORT=([halo-uring]=$((BASE_PORT + 10)) [halo-epoll]=$((BASE_PORT + 11))
                 [haproxy]=$((BASE_PORT + 12)) [nginx]=$((BASE_PORT + 13)))
declare -A PID

halo_conf() {  # io
  cat > "$work/halo-$1.toml" <<EOF
[global]
control_socket = "$work/halo-$1.sock"
# Access lines are info level; warn keeps the benchmark free of logging I/O,
# as the HAProxy side below has no log target.
log_level = "warn"

[proxy.web]
bind = ["127.0.0.1:${PORT[halo-$1]}"]
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
    bind 127.0.0.1:${PORT[haproxy]}
    default_backend web
backend web
    balance roundrobin
    option httpchk GET /health
    server web1 127.0.0.1:$((BASE_PORT + 1)) check inter 2000 rise 2 fall 3
    server web2 127.0.0.1:$((BASE_PORT + 2)) check inter 2000 rise 2 fall 3
    server web3 127.0.0.1:$((BASE_PORT + 3)) check inter 2000 rise 2 fall 3
EOF

nginx_proxy_conf "$work/proxy-nginx" "${PORT[nginx]}"

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# Open N client connections, each carrying one keep-alive request, and hold
# them while the proxy's RSS is read; prints the RSS in KiB.
rss_with_conns() {  # pid port
  python3 - "$1" "$2" "$OPEN_CONNS" <<'PY'
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
PY
}

# One wrk run on the 1 KiB page; prints "req/s p50 p99 errors" (lib.sh).
bench() {  # port [extra header]
  wrk_once "http://127.0.0.1:$1/1k.html" "${2:-}"
}

start_target() {  # label command...
  local label=$1; shift
  "$@" > "$work/$label.log" 2>&1 &
  PID[$label]=$!
  pids+=("$!")
  wait_port "${PORT[$label]}" || { cat "$work/$label.log" >&2; return 1; }
}

for t in $TARGETS; do
  case $t in
    halo-uring) halo_conf uring; start_target "$t" "$HALO_BIN" run -c "$work/halo-uring.toml" ;;
    halo-epoll) halo_conf epoll; start_target "$t" "$HALO_BIN" run -c "$work/halo-epoll.toml" ;;
    haproxy) start_target "$t" haproxy -db -f "$work/haproxy.cfg" ;;
    nginx) start_target "$t" nginx -p "$work/proxy-nginx" -c "$work/proxy-nginx/nginx.conf" -e "$work/proxy-nginx/error.log" ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
done
sleep 2   # first health checks
declare -A IDLE
for t in $TARGETS; do IDLE[$t]=$(rss "${PID[$t]}"); done
# Warm-up (pools, page cache), not reported.
for t in $TARGETS; do wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:${PORT[$t]}/1k.html" > /dev/null; done

: > "$work/rounds"
for r in $(seq 1 "$ROUNDS"); do
  for t in $TARGETS; do
    echo "$t $r ka $(bench "${PORT[$t]}")" >> "$work/rounds"
    echo "$t $r close $(bench "${PORT[$t]}" "Connection: close")" >> "$work/rounds"
  done
done
: > "$work/rss"
for t in $TARGETS; do
  echo "$t ${IDLE[$t]} $(rss_with_conns "${PID[$t]}" "${PORT[$t]}")" >> "$work/rss"
done

echo "wrk -t1 -c$CONNS -d$DURATION --latency http://127.0.0.1:PORT/1k.html (keep-alive; and with -H 'Connection: close'), $ROUNDS alternating rounds, medians; $OPEN_CONNS open connections for the memory column"
echo "kernel $(uname -r), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(haproxy -v | head -1), $(nginx -v 2>&1)"
echo
python3 - "$work/rounds" "$work/rss" "$TARGETS" <<'PY'
import statistics, sys
rounds, rssf, targets = sys.argv[1], sys.argv[2], sys.argv[3].split()

def ms(v):
    for unit, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float("nan")

res = {}
for line in open(rounds):
    t, _r, kind, rps, p50, p99, errs = line.split()
    res.setdefault((t, kind), []).append((float(rps), ms(p50), ms(p99), int(errs)))
rss = {l.split()[0]: (int(l.split()[1]), int(l.split()[2])) for l in open(rssf)}
med = {}
print("| proxy | keep-alive req/s | p50 | p99 | close req/s | p50 | p99 | RSS idle | RSS, open conns |")
print("|---|---|---|---|---|---|---|---|---|")
for t in targets:
    row = [t]
    for kind in ("ka", "close"):
        v = res[(t, kind)]
        m = [statistics.median(x[i] for x in v) for i in range(3)]
        med[(t, kind)] = m[0]
        row += [f"{m[0]:.0f}", f"{m[1]:.2f}ms", f"{m[2]:.2f}ms"]
        if any(x[3] for x in v):
            row[-3] += " (errors)"
    row += [f"{rss[t][0] / 1024:.1f} MiB", f"{rss[t][1] / 1024:.1f} MiB"]
    print("| " + " | ".join(row) + " |")
print()
peers = [p for p in ("haproxy", "nginx") if p in targets]
halos = [t for t in targets if t.startswith("halo")]
if peers and halos:
    print("| halo driver | " + " | ".join(f"vs {p} keep-alive | vs {p} close" for p in peers) + " |")
    print("|---|" + "---|---|" * len(peers))
    for h in halos:
        cells = []
        for p in peers:
            for kind in ("ka", "close"):
                cells.append(f"{med[(h, kind)] / med[(p, kind)]:.2f}x")
        print(f"| {h} | " + " | ".join(cells) + " |")
PY
