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

work=$(mktemp -d /tmp/halo-syscalls.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing on port $1" >&2
  return 1
}

for i in 1 2 3; do
  d=$work/web$i
  mkdir -p "$d/www"
  head -c 1024 /dev/zero | tr '\0' x > "$d/www/1k.html"
  cat > "$d/nginx.conf" <<EOF
daemon off; worker_processes 1; pid $d/nginx.pid; error_log $d/error.log warn;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $d/b; proxy_temp_path $d/p;
  fastcgi_temp_path $d/f; uwsgi_temp_path $d/u; scgi_temp_path $d/s;
  keepalive_requests 1000000; server { listen 127.0.0.1:$((BASE_PORT + i)); root $d/www; } }
EOF
  nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" &
  pids+=($!)
  wait_port $((BASE_PORT + i))
done

for io in epoll uring; do
  cat > "$work/halo-$io.toml" <<EOF
[global]
log_level = "warn"
[proxy.web]
bind = ["127.0.0.1:$PROXY"]
io = "$io"
workers = 1
servers = [
  { name = "web1", address = "127.0.0.1:$((BASE_PORT + 1))" },
  { name = "web2", address = "127.0.0.1:$((BASE_PORT + 2))" },
  { name = "web3", address = "127.0.0.1:$((BASE_PORT + 3))" },
]
EOF
done
cat > "$work/haproxy.cfg" <<EOF
global
    nbthread 1
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend web
    bind 127.0.0.1:$PROXY
    default_backend web
backend web
    balance roundrobin
    server web1 127.0.0.1:$((BASE_PORT + 1))
    server web2 127.0.0.1:$((BASE_PORT + 2))
    server web3 127.0.0.1:$((BASE_PORT + 3))
EOF

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
