#!/usr/bin/env bash
# CPU time per proxied request (not a test): wrk drives each proxy while
# the proxy's own CPU time (user + system, every thread, from
# /proc/PID/task/*/schedstat and stat) is read before and after; the figure
# is microseconds of CPU per request. On a shared machine this moves far
# less than req/s: time the proxy waits for a core does not count, only the
# work it does (its user-space code and the kernel work its syscalls and
# io_uring operations cause). The proxies run one after another within
# each round, ROUNDS rounds, median per proxy; keep-alive and
# `Connection: close` (a new client connection per request).
#
#   bash tests/bench/cpu.sh                  # target/release/halo
#   TARGETS="halo-uring nginx" MODES=close ROUNDS=5 bash tests/bench/cpu.sh
#   TARGETS="halo-uring halo-uring-w2 halo-epoll halo-epoll-w2" bash tests/bench/cpu.sh
#
# halo-uring-w2 / halo-epoll-w2: halo with `workers = 2` (everything else at
# one worker). The per-thread column shows each worker's share, i.e. how
# evenly SO_REUSEPORT spread the connections; with 2 workers on 2 cores
# shared with wrk and the backends, req/s cannot show scaling, but the
# capacity ratio can: 1 worker's CPU per request / (2 workers' CPU per
# request x the busiest worker's share x 2) x 2 (docs/benchmarks.md).
#
# Bounded: ROUNDS x MODES wrk runs of DURATION per proxy; every process it
# starts is killed by pid on exit. Loopback only. Needs nginx-light,
# haproxy, wrk.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
HALO_BIN=${HALO_BIN:-$root/target/release/halo}
DURATION=${DURATION:-3s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
MODES=${MODES:-ka close}
BASE_PORT=${BASE_PORT:-28380}
TARGETS=${TARGETS:-halo-uring halo-epoll haproxy nginx}

. "$(dirname "$0")/lib.sh"
bench_init cpu
start_backends
BACKENDS=("${pids[@]}")

declare -A PORT=([halo-uring]=$((BASE_PORT + 10)) [halo-epoll]=$((BASE_PORT + 11))
                 [haproxy]=$((BASE_PORT + 12)) [nginx]=$((BASE_PORT + 13))
                 [halo-uring-w2]=$((BASE_PORT + 14)) [halo-epoll-w2]=$((BASE_PORT + 15)))
declare -A PID

for t in halo-uring halo-epoll halo-uring-w2 halo-epoll-w2; do
  io=${t#halo-}; io=${io%-w2}; w=1; [ "$t" != "${t%-w2}" ] && w=2
  halo_toml "$work/$t.toml" "$io"
  sed -i "s/^bind = .*/bind = [\"127.0.0.1:${PORT[$t]}\"]/; s/^workers = 1/workers = $w/" "$work/$t.toml"
done
haproxy_cfg "$work/haproxy.cfg" "option forwardfor"
sed -i "s/bind 127.0.0.1:.*/bind 127.0.0.1:${PORT[haproxy]}/" "$work/haproxy.cfg"
nginx_proxy_conf "$work/proxy-nginx" "${PORT[nginx]}"

for t in $TARGETS; do
  case $t in
    halo-*)
      "$HALO_BIN" run --config "$work/$t.toml" --socket "$work/$t.sock" > "$work/$t.log" 2>&1 & ;;
    haproxy) haproxy -f "$work/haproxy.cfg" -db > "$work/$t.log" 2>&1 & ;;
    nginx) nginx -p "$work/proxy-nginx" -c "$work/proxy-nginx/nginx.conf" \
             -e "$work/proxy-nginx/error.log" > "$work/$t.log" 2>&1 & ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
  PID[$t]=$!
  pids+=("$!")
  wait_port "${PORT[$t]}" || { cat "$work/$t.log" >&2; exit 1; }
done

# "tid name ns_on_cpu utime_ticks stime_ticks" for every thread of pid.
threads() {
  local d
  for d in /proc/"$1"/task/*; do
    [ -r "$d/schedstat" ] || continue
    # comm may hold spaces: take the fields after the last ')'.
    echo "${d##*/} $(tr ' ' _ < "$d/comm") $(cut -d' ' -f1 "$d/schedstat") \
$(sed 's/.*) //' "$d/stat" | cut -d' ' -f12,13)"
  done
}

# Nanoseconds on CPU of the three nginx backends, masters and workers.
backends_ns() {
  local p sum=0 t
  for p in "${BACKENDS[@]}" $(pgrep -d' ' -P "$(IFS=,; echo "${BACKENDS[*]}")"); do
    for t in /proc/"$p"/task/*/schedstat; do
      [ -r "$t" ] && sum=$((sum + $(cut -d' ' -f1 "$t")))
    done
  done
  echo "$sum"
}

# The whole machine's CPU in clock ticks: "busy total" (busy is everything
# but idle and iowait; softirq work, which the kernel charges to no task
# when it runs in ksoftirqd or on an idle core, counts here).
machine_ticks() {
  awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# One measured wrk run; prints "requests ns user_ticks sys_ticks
# machine_busy_ticks machine_ticks wrk_us backends_ns per-thread".
measure() {  # target mode
  local t=$1 mode=$2 hdr=() before after out n m0 m1 b0 b1 wrk_us
  [ "$mode" = close ] && hdr=(-H "Connection: close")
  before=$(threads "${PID[$t]}")
  m0=$(machine_ticks); b0=$(backends_ns)
  # wrk's own CPU (user + system) from its rusage, as its parent sees it.
  out=$(python3 -c '
import resource, subprocess, sys
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(p.stdout, end="")
print("WRK_CPU_US", int((r.ru_utime + r.ru_stime) * 1e6))
' wrk -t1 -c"$CONNS" -d"$DURATION" "${hdr[@]}" "http://127.0.0.1:${PORT[$t]}/1k.html")
  m1=$(machine_ticks); b1=$(backends_ns)
  after=$(threads "${PID[$t]}")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  wrk_us=$(awk '/^WRK_CPU_US/ {print $2}' <<<"$out")
  if grep -qE "Non-2xx|Socket errors" <<<"$out"; then echo "$t $mode: wrk reported errors" >&2; fi
  # Per thread: ns, ticks; threads that used CPU, busiest first.
  join <(sort <<<"$before") <(sort <<<"$after") | awk -v n="$n" \
    -v mb="$(( ${m1% *} - ${m0% *} ))" -v mt="$(( ${m1#* } - ${m0#* } ))" \
    -v wrk="$wrk_us" -v bns="$((b1 - b0))" '
    { dns = $7 - $3; du = $8 - $4; ds = $9 - $5; ns += dns; u += du; s += ds
      if (dns > 0) per = per sprintf(" %s=%.1f", $2, dns / 1000 / n) }
    END { printf "%d %d %d %d %d %d %d %d%s\n", n, ns, u, s, mb, mt, wrk, bns, per }'
}

# Warm-up (pools, page cache), not counted.
for t in $TARGETS; do wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:${PORT[$t]}/1k.html" > /dev/null; done

: > "$work/rounds"
for r in $(seq 1 "$ROUNDS"); do
  for mode in $MODES; do
    for t in $TARGETS; do
      echo "$t $mode $(measure "$t" "$mode")" >> "$work/rounds"
    done
  done
done

echo "wrk -t1 -c$CONNS -d$DURATION (keep-alive / Connection: close), $ROUNDS rounds, medians"
echo "kernel $(uname -r), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work/rounds" "$TARGETS" "$MODES" "$(nproc)" <<'PY'
import statistics, sys
NCPU = int(sys.argv[4])
rows = [l.split() for l in open(sys.argv[1])]
targets, modes = sys.argv[2].split(), sys.argv[3].split()
hz = 100
med = {}
print()
print("| proxy | mode | requests in the run | CPU us / request | user | system | per thread (us / request) |")
print("|---|---|---|---|---|---|---|")
for m in modes:
    for t in targets:
        rs = [r for r in rows if r[0] == t and r[1] == m]
        cpu = [int(r[3]) / 1000 / int(r[2]) for r in rs]
        usr = [int(r[4]) / hz * 1e6 / int(r[2]) for r in rs]
        sys_ = [int(r[5]) / hz * 1e6 / int(r[2]) for r in rs]
        i = cpu.index(statistics.median_low(cpu))
        print(f"| {t} | {m} | {rs[i][2]} | {cpu[i]:.1f} | "
              f"{usr[i]:.1f} | {sys_[i]:.1f} | {' '.join(rs[i][10:])} |")
        med[(t, m)] = (cpu[i], rs[i][10:], rs[i])
# Where a request's CPU goes on the whole machine, from the same median
# rounds: the proxy, wrk, the three backends, and the rest (softirq work
# charged to no task, other processes). With the machine's cores all busy,
# req/s is the busy CPU over the CPU per request; a proxy whose own work
# fell to nothing would leave the rest, so "at 0" is the ratio to each peer
# that a proxy costing nothing at all would reach in this run, and "needs"
# the proxy CPU per request at which the issue's goal would be met.
GOAL = {("haproxy", "ka"): 1.3, ("nginx", "ka"): 1.2, ("haproxy", "close"): 1.5, ("nginx", "close"): 1.2}
print()
print("| proxy | mode | req/s | machine busy (cores) | machine CPU us / request | proxy | wrk (cores) | backends | rest | at 0 vs HAProxy / nginx | needs (goal) vs HAProxy / nginx |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for m in modes:
    for t in targets:
        if (t, m) not in med:
            continue
        _, _, r = med[(t, m)]
        n, ns, mb, mt, wrk, bns = int(r[2]), int(r[3]), int(r[6]), int(r[7]), int(r[8]), int(r[9])
        secs = mt / hz / NCPU
        total = mb / hz * 1e6 / n
        proxy, wrk_r, back = ns / 1000 / n, wrk / n, bns / 1000 / n
        rest = total - proxy - wrk_r - back
        other = total - proxy
        at0, needs = [], []
        for peer in ("haproxy", "nginx"):
            if t.startswith("halo") and (peer, m) in med:
                pr = med[(peer, m)][2]
                ptotal = int(pr[6]) / hz * 1e6 / int(pr[2])
                at0.append(f"{ptotal / other:.2f}x")
                need = ptotal / GOAL[(peer, m)] - other
                needs.append(f"{need:.1f} ({GOAL[(peer, m)]}x)")
            else:
                at0.append("-"); needs.append("-")
        print(f"| {t} | {m} | {n / secs:.0f} | {mb / mt * NCPU:.2f} | {total:.1f} | {proxy:.1f} | "
              f"{wrk_r:.1f} ({wrk / 1e6 / secs:.2f}) | {back:.1f} | {rest:.1f} | {' / '.join(at0)} | {' / '.join(needs)} |")

two = [(t, m) for (t, m) in med if t.endswith("-w2") and (t[:-3], m) in med]
if two:
    print()
    print("| workers = 2 | mode | busiest worker's share | capacity vs 1 worker |")
    print("|---|---|---|---|")
for t, m in two:
    cpu2, threads, _ = med[(t, m)]
    # The workers' threads are halo-web-N; their shares of the CPU time.
    w = [float(x.split("=")[1]) for x in threads if x.startswith("halo-web-")]
    share = max(w) / sum(w)
    print(f"| {t} | {m} | {share:.2f} | {med[(t[:-3], m)][0] / (cpu2 * share):.2f}x |")
PY
