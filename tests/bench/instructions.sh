#!/usr/bin/env bash
# User-space instructions and heap allocations per proxied request (not a
# test): a load-independent measure of halo's own per-request work, for a
# shared machine where req/s moves by +-20 % between runs.
#
# halo (one worker, log_level = "warn", driver IO) runs under valgrind in
# front of three nginx-light on loopback (1 KiB page, keep-alive both
# sides); a small Python client sends exactly N keep-alive GETs over CONNS
# connections and checks every answer is a 200 with the page. Each tool runs
# twice, with N1 and N2 requests, and the figure printed is the difference
# divided by N2 - N1, so start-up and shutdown cancel out:
#   callgrind: "I refs"  -> instructions per request (every thread of halo)
#   dhat:      "Total: ... in B blocks" -> heap allocations (and bytes) per request
#
#   bash tests/bench/instructions.sh                  # target/release/halo, epoll
#   HALO_BIN=... IO=uring N1=1000 N2=4000 bash tests/bench/instructions.sh
#   KEEP=/tmp/dir bash tests/bench/instructions.sh    # keep callgrind.out / dhat.json
#   TARGET=haproxy bash tests/bench/instructions.sh   # HAProxy, same setup (1 thread,
#                                                     # forwardfor; its pools make dhat moot)
#   TARGET=nginx bash tests/bench/instructions.sh     # nginx proxy_pass, upstream keep-alive
#   CLOSE=1 bash tests/bench/instructions.sh          # `Connection: close`: a new client
#                                                     # connection per request
#   (with an unstripped build, CARGO_PROFILE_RELEASE_STRIP=false, for
#   callgrind_annotate and dh_view.html)
#
# Bounded: 4 runs of at most LIMIT seconds each (valgrind slows halo ~50x);
# every process it starts is killed by pid on exit. Loopback only.
# Needs valgrind, nginx-light, /usr/bin/python3.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
HALO_BIN=${HALO_BIN:-$root/target/release/halo}
IO=${IO:-epoll}
TARGET=${TARGET:-halo}
N1=${N1:-1000}
N2=${N2:-5000}
CONNS=${CONNS:-10}
LIMIT=${LIMIT:-300}
BASE_PORT=${BASE_PORT:-28280}
PROXY=$((BASE_PORT + 10))

. "$(dirname "$0")/lib.sh"
bench_init instr
start_backends
halo_toml "$work/halo.toml" "$IO"

haproxy_cfg "$work/haproxy.cfg" "option forwardfor"
nginx_proxy_conf "$work/proxy-nginx" "$PROXY"
case $TARGET in
  haproxy) cmd=(haproxy -f "$work/haproxy.cfg" -db) ;;
  nginx) cmd=(nginx -p "$work/proxy-nginx" -c "$work/proxy-nginx/nginx.conf" -e "$work/proxy-nginx/error.log") ;;
  *) cmd=("$HALO_BIN" run --config "$work/halo.toml" --socket "$work/h.sock") ;;
esac

# Exactly $1 requests over $CONNS keep-alive connections (or $CONNS
# clients each opening a connection per request: $4 = close); fails unless
# every answer is a 200 carrying the 1 KiB page.
cat > "$work/client.py" <<'EOF'
import http.client, sys, threading
total, conns, port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
close = sys.argv[4] == "close"
hdrs = {"Connection": "close"} if close else {}
bad = []
def run(n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(n):
        c.request("GET", "/1k.html", headers=hdrs)
        r = c.getresponse()
        body = r.read()
        if r.status != 200 or len(body) != 1024:
            bad.append(r.status)
    c.close()
ts = [threading.Thread(target=run, args=(total // conns + (i < total % conns),))
      for i in range(conns)]
for t in ts: t.start()
for t in ts: t.join()
if bad:
    sys.exit(f"{len(bad)} bad answers, e.g. {bad[:5]}")
EOF

# tool, requests: run halo under the tool for that many requests; the
# tool's summary goes to $work/TOOL-N.log.
one() {
  local tool=$1 n=$2 log=$work/$1-$2.log
  timeout "$LIMIT" valgrind --tool="$tool" --log-file="$log" \
    --"$tool"-out-file="$work/$tool-$n.out" \
    "${cmd[@]}" > "$work/proxy.out" 2>&1 &
  local pid=$!
  pids+=("$pid")
  wait_port "$PROXY" 300
  timeout "$LIMIT" /usr/bin/python3 "$work/client.py" "$n" "$CONNS" "$PROXY" "${CLOSE:+close}"
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  # halo must stop cleanly; HAProxy and nginx (no master) exit non-zero on SIGTERM.
  if { [ "$TARGET" = halo ] && [ "$rc" != 0 ]; } || ! grep -qE ' I *refs:| Total:' "$log"; then
    echo "$TARGET under $tool: exit status $rc" >&2
    cat "$work/proxy.out" "$log" >&2
    exit 1
  fi
}

num() { tr -d , <<< "$1"; }

one callgrind "$N1"; one callgrind "$N2"; one dhat "$N1"; one dhat "$N2"
c1=$work/callgrind-$N1.log c2=$work/callgrind-$N2.log
d1=$work/dhat-$N1.log d2=$work/dhat-$N2.log
i1=$(num "$(awk '/ I *refs:/ {print $NF}' "$c1")")
i2=$(num "$(awk '/ I *refs:/ {print $NF}' "$c2")")
read -r b1 k1 < <(awk '/ Total:/ {print $3, $6}' "$d1" | tr -d ,)
read -r b2 k2 < <(awk '/ Total:/ {print $3, $6}' "$d2" | tr -d ,)
if [ -n "${KEEP:-}" ]; then
  mkdir -p "$KEEP"
  cp "$work"/callgrind-*.out "$work"/dhat-*.out "$KEEP"/
fi
dn=$((N2 - N1))
label="halo $IO"; [ "$TARGET" = halo ] || label=$TARGET
how="keep-alive requests over $CONNS connections"
[ -n "${CLOSE:-}" ] && how="requests with Connection: close, $CONNS clients"
echo "$label, $N1 and $N2 $how (${cmd[0]})"
echo "  instructions: $i1 / $i2 -> per request $(((i2 - i1) / dn))"
echo "  allocations:  $k1 / $k2 blocks -> per request $(awk -v a="$k1" -v b="$k2" -v n="$dn" 'BEGIN {printf "%.2f", (b - a) / n}')"
echo "  bytes:        $b1 / $b2 -> per request $(((b2 - b1) / dn))"
