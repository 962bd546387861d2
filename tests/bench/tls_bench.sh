#!/usr/bin/env bash
# TLS benchmark (not a test): wrk over HTTPS against halo (io_uring and
# epoll), Debian's HAProxy (OpenSSL) and nginx (OpenSSL), one worker each,
# the same certificate, the same three nginx-light backends on loopback
# (plain HTTP, keep-alive upstream), a 1 KiB page:
#   - full handshakes per second: `Connection: close`, so every request is a
#     new TCP connection and a full TLS handshake (wrk does not resume
#     sessions), with an ECDSA P-256 and an RSA 2048 certificate;
#   - keep-alive HTTPS req/s and p50/p99 latency (ECDSA certificate).
# Prints a Markdown table.
#
#   bash tests/bench/tls_bench.sh                 # uses target/release/halo
#   HALO_BIN=... DURATION=10s CONNS=50 bash tests/bench/tls_bench.sh
#
# Bounded: every wrk run is -t1 -c$CONNS -d$DURATION; every process it
# starts is killed by pid on exit. Needs nginx-light, haproxy, wrk, openssl.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
HALO_BIN=${HALO_BIN:-$root/target/release/halo}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
BASE_PORT=${BASE_PORT:-18180}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

. "$(dirname "$0")/lib.sh"
bench_init tlsbench
start_backends
PORT=$((BASE_PORT + 10))
URL="https://127.0.0.1:$PORT/1k.html"

# One certificate of each kind, made here; both proxies read the same file.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=bench.example -keyout "$work/ecdsa.key" -out "$work/ecdsa.crt" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
  -subj /CN=bench.example -keyout "$work/rsa.key" -out "$work/rsa.crt" 2>/dev/null
for k in ecdsa rsa; do cat "$work/$k.crt" "$work/$k.key" > "$work/$k.pem"; done

halo_conf() {  # io cert
  cat > "$work/halo.toml" <<EOF
[global]
control_socket = "$work/halo.sock"
log_level = "warn"
[proxy.web]
bind = [{ address = "127.0.0.1:$PORT", tls = { certificates = ["$work/$2.pem"] } }]
io = "$1"
workers = 1
$(halo_servers)
EOF
}

haproxy_conf() {  # cert
  cat > "$work/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    option forwardfor
    option http-keep-alive
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 10s
    timeout http-request 10s
frontend web
    bind 127.0.0.1:$PORT ssl crt $work/$1.pem alpn http/1.1
    default_backend web
backend web
    balance roundrobin
    server web1 127.0.0.1:$((BASE_PORT + 1))
    server web2 127.0.0.1:$((BASE_PORT + 2))
    server web3 127.0.0.1:$((BASE_PORT + 3))
EOF
}

nginx_conf() {  # cert
  mkdir -p "$work/front"
  cat > "$work/front/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $work/front/nginx.pid;
error_log $work/front/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/front/body; proxy_temp_path $work/front/proxy;
    fastcgi_temp_path $work/front/fcgi; uwsgi_temp_path $work/front/uwsgi; scgi_temp_path $work/front/scgi;
    upstream web {
        server 127.0.0.1:$((BASE_PORT + 1));
        server 127.0.0.1:$((BASE_PORT + 2));
        server 127.0.0.1:$((BASE_PORT + 3));
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$PORT ssl;
        ssl_certificate $work/$1.crt;
        ssl_certificate_key $work/$1.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }
}
EOF
}

run() {  # label cert runs command... ; runs: "close" or "close ka"
  local label=$1 cert=$2 runs=$3
  shift 3
  "$@" > "$work/$label.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  wait_port "$PORT" || { cat "$work/$label.log" >&2; return 1; }
  wrk -t1 -c"$CONNS" -d2s "$URL" > /dev/null   # warm-up, not reported
  local r
  for what in $runs; do
    if [ "$what" = ka ]; then r=$(wrk_once "$URL"); else r=$(wrk_once "$URL" "Connection: close"); fi
    echo "$label $cert $what $r" >> "$work/results"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
  sleep 1
}

for cert in ecdsa rsa; do
  runs="close"
  [ "$cert" = ecdsa ] && runs="close ka"
  for io in uring epoll; do
    halo_conf "$io" "$cert"
    run "halo-$io" "$cert" "$runs" "$HALO_BIN" run -c "$work/halo.toml"
  done
  haproxy_conf "$cert"
  run haproxy "$cert" "$runs" haproxy -db -f "$work/haproxy.cfg"
  nginx_conf "$cert"
  run nginx "$cert" "$runs" nginx -p "$work/front" -c "$work/front/nginx.conf" -e "$work/front/error.log"
done

echo "wrk -t1 -c$CONNS -d$DURATION --latency $URL; handshakes: -H 'Connection: close' (a full handshake per request)"
echo "kernel $(uname -r), $(nproc) cores, $(haproxy -v | head -1), $(nginx -v 2>&1), $(openssl version)"
echo
echo "| proxy | ECDSA P-256 handshakes/s | RSA 2048 handshakes/s | keep-alive HTTPS req/s | p50 | p99 |"
echo "|---|---|---|---|---|---|"
for t in halo-uring halo-epoll haproxy nginx; do
  awk -v t="$t" '
    $1 == t && $2 == "ecdsa" && $3 == "close" { e = $4 }
    $1 == t && $2 == "rsa" && $3 == "close" { r = $4 }
    $1 == t && $3 == "ka" { k = $4; p50 = $5; p99 = $6 }
    $1 == t && $7 != "" && $7 != "0" { errs = errs " " $2 "/" $3 ": " $7 " wrk error lines" }
    END {
      printf "| %s | %s | %s | %s | %s | %s |\n", t, e, r, k, p50, p99
      if (errs != "") printf "<!-- %s:%s -->\n", t, errs
    }' "$work/results"
done
