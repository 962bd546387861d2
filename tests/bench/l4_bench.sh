#!/usr/bin/env bash
# Layer-4 benchmark (not a test): new connections per second and throughput
# from the lab's client to the VIP, through
#   - halo [l4] forward = "dr"  (nftables, the backends answer the client)
#   - halo [l4] forward = "nat" (nftables DNAT + masquerade)
#   - halo [proxy] mode = "tcp" (user space, one worker)
#   - HAProxy mode tcp          (Debian's, one thread)
# and, for scale, the client straight to one backend. Same three nginx-light
# backends (the lab's, plus a large file), one `halo lab` (its own name, its
# own namespaces, 192.0.2.0/24 only), the LB holding the VIP by VRRP.
#
#   bash tests/bench/l4_bench.sh             # uses target/release/halo
#   HALO_BIN=... DURATION=10s CONNS=50 BIG_MIB=64 bash tests/bench/l4_bench.sh
#   MODES="dr" bash tests/bench/l4_bench.sh   # only these halo rows (and HAProxy)
#
# Connection rate: wrk -t1 -c$CONNS -d$DURATION with `Connection: close`
# (every request a new TCP connection; nginx closes first, so the client's
# ports are not held in TIME_WAIT). Throughput: wrk -t1 -c4 -d$DURATION on a
# $BIG_MIB MiB file (keep-alive); wrk --timeout 30s (a 64 MiB answer can take more than wrk's default 2 s). Bounded: each wrk run lasts $DURATION;
# every process started is killed by pid and the lab taken down on exit.
# Needs root (namespaces), nginx-light, haproxy, wrk.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
HALO_BIN=${HALO_BIN:-$root/target/release/halo}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
BIG_MIB=${BIG_MIB:-64}
VIP=192.0.2.100
NAME=l4b$(($$ % 100000))

work=$(mktemp -d "/tmp/halo-l4bench.XXXXXX")
chmod 755 "$work"
pids=()
lab() { "$HALO_BIN" lab "$@" --name "$NAME" --dir "$work/lab"; }
in_node() { local n=$1; shift; "$HALO_BIN" lab exec "$n" --name "$NAME" --dir "$work/lab" -- "$@"; }
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  lab down >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# `--l4 dr`: the backends hold the VIP on lo with arp_ignore=1 and
# arp_announce=2, and nginx listens on it too. NAT and the proxies use the
# backends' own addresses; the extra VIP on lo changes nothing for them.
lab up --no-start --lbs 1 --backends 3 --l4 dr >/dev/null
for w in web1 web2 web3; do
  d=$work/lab/$w
  # A sparse file: read from the page cache, no disk in the measurement.
  truncate -s "${BIG_MIB}M" "$d/big"
  sed -i "s|    location = /health|    location = /big { alias $d/big; }\n    location = /health|" "$d/nginx.conf"
  lab start "$w" >/dev/null
done

vrrp() {
  cat <<EOF
[global]
log_level = "warn"

[vrrp.VI_1]
interface = "eth0"
vrid = 51
priority = 150
advert_interval = "1s"
virtual_ips = ["$VIP/24"]
EOF
}
servers() {  # port suffix ("" for DR: the port cannot change)
  echo "servers = ["
  for i in 1 2 3; do echo "  { name = \"web$i\", address = \"192.0.2.2$i$1\" },"; done
  echo "]"
}
health() {
  printf '[%s.health]\ntype = "tcp"\ninterval = "2s"\n' "$1"
}

conf_dr() {
  vrrp
  printf '\n[l4.web]\naddress = "%s"\nport = 80\nforward = "dr"\ninterface = "eth0"\n' "$VIP"
  servers ""
  health l4.web
}
conf_nat() {
  vrrp
  printf '\n[l4.web]\naddress = "%s"\nport = 80\nforward = "nat"\n' "$VIP"
  servers ":80"
  health l4.web
}
conf_tcp() {
  vrrp
  printf '\n[proxy.web]\nmode = "tcp"\nbind = ["0.0.0.0:80"]\nworkers = 1\n'
  servers ":80"
  health proxy.web
}
haproxy_cfg() {
  cat <<EOF
global
    maxconn 4000
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend web
    bind :80
    default_backend webs
backend webs
    balance roundrobin
    server web1 192.0.2.21:80 check inter 2s
    server web2 192.0.2.22:80 check inter 2s
    server web3 192.0.2.23:80 check inter 2s
EOF
}

wait_vip() {  # until a page comes back from the VIP (at most 60 s)
  for _ in $(seq 1 600); do
    if in_node client curl -s -m 1 -o /dev/null "http://$1/" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "no page from $1" >&2
  return 1
}

# wrk's figures as "req/s|transfer/s|errors".
wrk_run() {  # url conns [header]
  local out
  if [ -n "${3:-}" ]; then
    out=$(in_node client wrk -t1 -c"$2" -d"$DURATION" --timeout 30s -H "$3" "$1")
  else
    out=$(in_node client wrk -t1 -c"$2" -d"$DURATION" --timeout 30s "$1")
  fi
  local rps tps err
  rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
  tps=$(awk '/^Transfer\/sec:/ {print $2}' <<<"$out")
  err=$(awk '/Socket errors|Non-2xx/ {sub(/^ +/, ""); printf "%s; ", $0}' <<<"$out")
  echo "$rps|$tps|${err:-none}"
}

measure() {  # label host
  local c t
  c=$(wrk_run "http://$2/" "$CONNS" "Connection: close")
  t=$(wrk_run "http://$2/big" 4)
  printf '| %s | %s | %s | %s |\n' "$1" "${c%%|*}" "$(cut -d'|' -f2 <<<"$t")" \
    "close: $(cut -d'|' -f3 <<<"$c") big: $(cut -d'|' -f3 <<<"$t")"
}

echo "| path | new connections/s (Connection: close, $CONNS conns) | throughput (${BIG_MIB} MiB file, 4 conns) | errors |"
echo "|---|---|---|---|"

[ -n "${MODES+x}" ] || measure "client -> web1 directly (no balancer)" 192.0.2.21

for mode in ${MODES-dr nat tcp}; do
  if [ "$mode" = nat ]; then
    # LVS-NAT: the balancer forwards (the tests' start_nat does the same).
    in_node lb1 sysctl -qw net.ipv4.ip_forward=1
  fi
  "conf_$mode" > "$work/lab/lb1/halo.toml"
  lab start lb1 >/dev/null
  wait_vip "$VIP"
  case $mode in
    dr) label='halo `[l4]` DR (nftables)' ;;
    nat) label='halo `[l4]` NAT (nftables)' ;;
    tcp) label='halo `mode = "tcp"` (1 worker)' ;;
  esac
  measure "$label" "$VIP"
  lab stop lb1 >/dev/null
  in_node lb1 sysctl -qw net.ipv4.ip_forward=0
done

# HAProxy: halo only holds the VIP (VRRP alone), HAProxy listens on :80.
vrrp > "$work/lab/lb1/halo.toml"
lab start lb1 >/dev/null
haproxy_cfg > "$work/haproxy.cfg"
in_node lb1 haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)
wait_vip "$VIP" || { cat "$work/haproxy.log" >&2; exit 1; }
measure 'HAProxy `mode tcp` (1 thread)' "$VIP"
lab stop lb1 >/dev/null
echo
echo "$(nproc) cores, $(uname -r), DURATION=$DURATION; load average before the end: $(cut -d' ' -f1-3 /proc/loadavg)"
