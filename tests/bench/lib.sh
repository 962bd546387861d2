# Shared set-up of the proxy benchmarks (sourced, not run): a work directory
# and the processes started in it, killed by pid and removed on exit; a
# port wait; three nginx-light backends on loopback serving a 1 KiB page
# and /health; the minimal halo and HAProxy configs in front of them.
# The caller sets BASE_PORT: backends on BASE_PORT+1..3, the proxy on +10.

bench_init() {  # name: the work directory is /tmp/halo-NAME.XXXXXX
  work=$(mktemp -d "/tmp/halo-$1.XXXXXX")
  chmod 755 "$work"
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}

wait_port() {  # port [tries, 0.1 s apart; default 100]
  for _ in $(seq 1 "${2:-100}"); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing on port $1" >&2
  return 1
}

start_backends() {
  local i d
  for i in 1 2 3; do
    d=$work/web$i
    mkdir -p "$d/www"
    head -c 1024 /dev/zero | tr '\0' x > "$d/www/1k.html"
    echo ok > "$d/www/health"
    cat > "$d/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $d/body; proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fcgi; uwsgi_temp_path $d/uwsgi; scgi_temp_path $d/scgi;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    server { listen 127.0.0.1:$((BASE_PORT + i)); root $d/www; }
}
CONF
    nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" &
    pids+=($!)
    wait_port $((BASE_PORT + i))
  done
}

# The three backends as halo's `servers` list.
halo_servers() {
  cat <<CONF
servers = [
  { name = "web1", address = "127.0.0.1:$((BASE_PORT + 1))" },
  { name = "web2", address = "127.0.0.1:$((BASE_PORT + 2))" },
  { name = "web3", address = "127.0.0.1:$((BASE_PORT + 3))" },
]
CONF
}

# One worker of driver IO, no logging I/O (access lines are info level).
halo_toml() {  # file io
  cat > "$1" <<CONF
[global]
log_level = "warn"
[proxy.web]
bind = ["127.0.0.1:$((BASE_PORT + 10))"]
io = "$2"
workers = 1
$(halo_servers)
CONF
}

# One thread, keep-alive, round robin; extra `defaults` lines as arguments.
haproxy_cfg() {  # file [defaults line ...]
  local file=$1; shift
  {
    printf 'global\n    nbthread 1\ndefaults\n    mode http\n    option http-keep-alive\n'
    local line
    for line in "$@"; do printf '    %s\n' "$line"; done
    cat <<CONF
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend web
    bind 127.0.0.1:$((BASE_PORT + 10))
    default_backend web
backend web
    balance roundrobin
    server web1 127.0.0.1:$((BASE_PORT + 1))
    server web2 127.0.0.1:$((BASE_PORT + 2))
    server web3 127.0.0.1:$((BASE_PORT + 3))
CONF
  } > "$file"
}

# One wrk run (-t1, $CONNS connections, $DURATION) against a URL, with an
# extra request header if given; prints "req/s p50 p99 errors" (wrk's units;
# errors: how many of wrk's "Non-2xx" / "Socket errors" lines it printed).
wrk_once() {  # url [extra header]
  local out
  if [ -n "${2:-}" ]; then
    out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency -H "$2" "$1")
  else
    out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$1")
  fi
  local rps p50 p99 errs
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errs=$(grep -cE "Non-2xx|Socket errors" <<<"$out" || true)
  echo "$rps $p50 $p99 $errs"
}

# nginx as a proxy configured like the others: one worker, round robin over
# the three backends, upstream keep-alive, X-Forwarded-For (it has no active
# health checks). Writes DIR/nginx.conf; run it with
# `nginx -p DIR -c DIR/nginx.conf -e DIR/error.log`.
nginx_proxy_conf() {  # dir port
  local d=$1
  mkdir -p "$d"
  cat > "$d/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $d/body; proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fcgi; uwsgi_temp_path $d/uwsgi; scgi_temp_path $d/scgi;
    keepalive_timeout 10s;
    keepalive_requests 1000000;
    upstream web {
        server 127.0.0.1:$((BASE_PORT + 1));
        server 127.0.0.1:$((BASE_PORT + 2));
        server 127.0.0.1:$((BASE_PORT + 3));
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$2;
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
