#!/usr/bin/env bash
# A/B of two halo binaries (not a test): the same proxy config, alternating
# A and B for ROUNDS rounds of `wrk -t1 -c50 -d8s` keep-alive against one
# worker of driver IO (uring or epoll), three nginx-light on loopback, a
# 1 KiB page. Alternating spreads the machine's drift over both.
#
#   bash tests/bench/ab.sh OLD_BINARY NEW_BINARY [uring|epoll]
#   ROUNDS=5 bash tests/bench/ab.sh ...
#
# Bounded: ROUNDS x 2 wrk runs of 8 s; every process it starts is killed by
# pid on exit. Needs nginx-light and wrk.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 A_BINARY B_BINARY [uring|epoll]" >&2; exit 2; }
A=$1 B=$2 IO=${3:-uring}
ROUNDS=${ROUNDS:-3}
BASE_PORT=${BASE_PORT:-28180}
PROXY=$((BASE_PORT + 10))

work=$(mktemp -d /tmp/halo-ab.XXXXXX)
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
cat > "$work/halo.toml" <<EOF
[global]
log_level = "warn"
[proxy.web]
bind = ["127.0.0.1:$PROXY"]
io = "$IO"
workers = 1
servers = [
  { name = "web1", address = "127.0.0.1:$((BASE_PORT + 1))" },
  { name = "web2", address = "127.0.0.1:$((BASE_PORT + 2))" },
  { name = "web3", address = "127.0.0.1:$((BASE_PORT + 3))" },
]
EOF

for round in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    bin=$A; [ "$side" = B ] && bin=$B
    "$bin" run --config "$work/halo.toml" --socket "$work/h.sock" > "$work/$side.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_port "$PROXY"
    wrk -t1 -c50 -d2s "http://127.0.0.1:$PROXY/1k.html" > /dev/null
    rps=$(wrk -t1 -c50 -d8s "http://127.0.0.1:$PROXY/1k.html" | awk '/^Requests\/sec:/ {print $2}')
    echo "round $round $side $rps req/s"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    sleep 0.5
  done
done
