#!/usr/bin/env python3
"""Benchmark: spurious failovers at 10 ms adverts with the proxy at full load.

One `halo lab` (own name, namespaces removed on exit, also on failure or
SIGTERM) with three nginx backends and three VRRP pairs side by side on the
same bridge, every one at VRRPv3's minimum advert interval (10 ms, master
down after 36.1 ms at the backup's priority 100):

    pair        nodes       vrid  VIP           daemons
    halo        lb1, lb2    51    192.0.2.100   halo (VRRP + proxy, workers = cores)
    keepalived  lb3, lb4    52    192.0.2.101   keepalived 2.2 (--vrrp), its defaults
    mixed       lb5, lb6    53    192.0.2.102   halo (master) + keepalived (backup)

`--halo-sched` sets the halo pair's VRRP thread from outside after start
(chrt, renice on the main thread's id), to show what the scheduling is
worth: `as-started` (halo's own: SCHED_RR 10 when permitted, as here as
root), `nice` (SCHED_OTHER at nice -10, what halo did before), `normal`
(SCHED_OTHER at nice 0).

The client runs wrk through the halo pair's VIP for the whole duration
(bounded by -d), so halo's proxy on lb1, the three nginx and wrk itself
keep the machine's cores busy, together with whatever else runs on it.

Counted for the duration: state changes of every node (halo: the
`transitions` counter of `halo status --json`; keepalived: `Entering ...
STATE` lines of its log), and, from a capture of the adverts on the bridge
(kernel timestamps), each master's advert count and the gaps between its
consecutive adverts (p99, p99.9, max, how many over 20 ms and over the
36 ms master-down interval). A gap over the master-down interval is a
spurious failover unless the backup was late too. For halo backups also
the late master-down timers that waited their grace (`deferred`: each one
a takeover that the old code made at once; a state change after it means
the grace ran out with no advert).

    sudo HALO_BIN=target/release/halo python3 tests/bench/vrrp_soak.py            # 600 s
    sudo HALO_BIN=target/release/halo python3 tests/bench/vrrp_soak.py --duration 30

Prints a Markdown table (results go into docs/benchmarks.md); exits 1 if
a halo pair (halo, mixed) changed state.
"""

import argparse
import collections
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from halolab import Lab, wait_for  # noqa: E402

INTERVAL_MS = 10
# RFC 5798 Master_Down_Interval of a backup at priority 100.
MASTER_DOWN_MS = 3 * INTERVAL_MS + (256 - 100) * INTERVAL_MS / 256

# name -> (master, backup, vrid, VIP, master daemon, backup daemon)
PAIRS = {
    "halo": ("lb1", "lb2", 51, "192.0.2.100", "halo", "halo"),
    "keepalived": ("lb3", "lb4", 52, "192.0.2.101", "keepalived", "keepalived"),
    "mixed": ("lb5", "lb6", 53, "192.0.2.102", "halo", "keepalived"),
}

# --halo-sched: (chrt arguments, nice) for the halo pair's VRRP thread.
SCHED = {
    "as-started": None,
    "nice": (["-o", "0"], -10),
    "normal": (["-o", "0"], 0),
}


def halo_vrrp(prio, vrid, vip):
    return f"""
[vrrp.VI_1]
interface = "eth0"
vrid = {vrid}
version = 3
priority = {prio}
advert_interval = "{INTERVAL_MS}ms"
virtual_ips = ["{vip}/24"]
"""


def ka_cfg(prio, vrid, vip):
    return f"""global_defs {{
  router_id r{vrid}_{prio}
  vrrp_version 3
  vrrp_garp_master_delay 0
}}
vrrp_instance VI_1 {{
  state BACKUP
  interface eth0
  virtual_router_id {vrid}
  priority {prio}
  advert_int {INTERVAL_MS / 1000}
  virtual_ipaddress {{
    {vip}/24
  }}
}}
"""


def setup_node(lab, node, daemon, prio, vrid, vip, proxy):
    """halo.toml or keepalived.conf (the other one removed) for `node`."""
    for f in ("halo.toml", "keepalived.conf"):
        try:
            os.remove(lab.path(node, f))
        except FileNotFoundError:
            pass
    if daemon == "keepalived":
        lab.write(node, "keepalived.conf", ka_cfg(prio, vrid, vip))
        return
    text = "[global]\nlog_level = \"info\"\n" + halo_vrrp(prio, vrid, vip)
    if proxy:
        # The generated proxy of the lab (three webs, /health checks), with a
        # worker per core of this machine, tracked as the lab tracks it.
        text += "track = [{ proxy = \"web\", weight = -50 }]\n\n" + proxy
    lab.write(node, "halo.toml", text)


def generated_proxy(lab):
    """`[proxy.web]` and its health table from the lab's own lb1 config."""
    gen = open(lab.path("lb1", "halo.toml")).read()
    i = gen.index("[proxy.web]")
    return gen[i:].replace("workers = 1", f"workers = {os.cpu_count() or 2}")


def halo_transitions(lab, node):
    v = lab.vrrp(node)
    return v["transitions"] if v else None


def ka_entering(lab, node, since=0):
    return len(re.findall(r"Entering (MASTER|BACKUP|FAULT) STATE", lab.log(node, "keepalived", since)))


def main_thread_tid(lab, node):
    """halo's main thread (the VRRP thread) is the process itself."""
    return int(open(lab.path(node, "halo.pid")).read().split()[0])


def advert_gaps(pcap):
    """src -> sorted gaps (ms) between its consecutive adverts, and counts."""
    out = subprocess.run(["tcpdump", "-r", pcap, "-n", "-tt", "ip proto 112"],
                         capture_output=True, text=True).stdout
    last, gaps, count = {}, collections.defaultdict(list), collections.Counter()
    for m in re.finditer(r"^(\d+\.\d+) IP (\S+) > \S+: VRRPv3, Advertisement, vrid (\d+), prio (\d+)",
                         out, re.M):
        t, src, prio = float(m.group(1)), m.group(2), int(m.group(4))
        if prio == 0:
            continue
        key = (int(m.group(3)), src)
        count[key] += 1
        if key in last:
            gaps[key].append((t - last[key]) * 1000)
        last[key] = t
    return {k: sorted(v) for k, v in gaps.items()}, count


def pct(sorted_v, p):
    if not sorted_v:
        return float("nan")
    return sorted_v[min(len(sorted_v) - 1, int(len(sorted_v) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=int(os.environ.get("DURATION", "600")),
                    help="seconds of load (default 600, or $DURATION)")
    ap.add_argument("--connections", type=int, default=64, help="wrk -c (default 64)")
    ap.add_argument("--pairs", default=",".join(PAIRS), help="which pairs, comma-separated")
    ap.add_argument("--halo-sched", choices=SCHED, default="as-started",
                    help="the halo pair's VRRP thread: as halo set it, or changed from outside")
    a = ap.parse_args()
    pairs = [p for p in a.pairs.split(",") if p]
    for p in pairs:
        if p not in PAIRS:
            sys.exit(f"unknown pair {p}; known: {', '.join(PAIRS)}")
    ip = {f"lb{n}": f"192.0.2.{10 + n}" for n in range(1, 7)}

    with Lab("soak", lbs=6, backends=3) as lab, tempfile.TemporaryDirectory() as tmp:
        proxy = generated_proxy(lab)
        for p in pairs:
            m, b, vrid, vip, dm, db = PAIRS[p]
            setup_node(lab, m, dm, 110, vrid, vip, proxy if p == "halo" else None)
            setup_node(lab, b, db, 100, vrid, vip, proxy if p == "halo" else None)
        used = [n for p in pairs for n in PAIRS[p][:2]]
        for n in ["web1", "web2", "web3"] + used:
            lab.start(n)
        for p in pairs:
            m, b, _, vip, *_ = PAIRS[p]
            wait_for(lambda: lab.holders([m, b], vip) == [m], 60, f"{m} master of {vip} ({p})")
        if "halo" in pairs and SCHED[a.halo_sched]:
            chrt, nice = SCHED[a.halo_sched]
            for n in PAIRS["halo"][:2]:
                tid = str(main_thread_tid(lab, n))
                subprocess.run(["chrt", "-p", *chrt, tid], check=True, capture_output=True)
                subprocess.run(["renice", "-n", str(nice), "-p", tid], check=True, capture_output=True)
        sched = {n: subprocess.run(["ps", "-o", "cls=,rtprio=,ni=", "-p", str(main_thread_tid(lab, n))],
                                   capture_output=True, text=True).stdout.split()
                 for p in pairs for n, d in zip(PAIRS[p][:2], PAIRS[p][4:]) if d == "halo"}
        if "halo" in pairs:
            # The proxy's health checks pass before the load starts, so
            # tracking does not move the priority during the soak.
            wait_for(lambda: lab.exec("client", "curl", "-sf", "-m", "2", "http://192.0.2.100/",
                                      check=False).returncode == 0, 60, "the proxy answering")
        time.sleep(2)

        before_halo = {n: halo_transitions(lab, n) for p in pairs for n, d in
                       zip(PAIRS[p][:2], PAIRS[p][4:]) if d == "halo"}
        ka_marks = {n: lab.log_mark(n, "keepalived") for p in pairs for n, d in
                    zip(PAIRS[p][:2], PAIRS[p][4:]) if d == "keepalived"}
        halo_marks = {n: lab.log_mark(n) for n in before_halo}

        pcap = os.path.join(tmp, "vrrp.pcap")
        cap = subprocess.Popen(["ip", "netns", "exec", lab.ns("switch"), "tcpdump", "-i", "br0", "-n",
                                "-B", "4096", "-w", pcap, "ip proto 112"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        loads, stop = [], threading.Event()

        steals = []  # per 10 s: the largest share of any one CPU's time stolen

        def cpu_times():
            # cpuN user nice system idle iowait irq softirq steal ...
            return [list(map(int, line.split()[1:9])) for line in open("/proc/stat")
                    if line.startswith("cpu") and line[3].isdigit()]

        def sample_load():
            prev = cpu_times()
            while not stop.wait(10):
                loads.append(float(open("/proc/loadavg").read().split()[0]))
                cur = cpu_times()
                steals.append(max((c[7] - p[7]) / max(1, sum(c) - sum(p)) for c, p in zip(cur, prev)))
                prev = cur

        sampler = threading.Thread(target=sample_load, daemon=True)
        try:
            time.sleep(1)
            load_start = open("/proc/loadavg").read().split()[:3]
            sampler.start()
            if "halo" in pairs:
                wrk = lab.spawn("wrk", "client", ["wrk", "-t2", f"-c{a.connections}", f"-d{a.duration}s",
                                                  "http://192.0.2.100/"], stdout=subprocess.PIPE)
                wrk_out, _ = wrk.communicate(timeout=a.duration + 120)
            else:
                time.sleep(a.duration)
                wrk_out = ""
            load_end = open("/proc/loadavg").read().split()[:3]
        finally:
            stop.set()
            cap.send_signal(signal.SIGINT)
            try:
                _, cap_err = cap.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                cap.kill()
                _, cap_err = cap.communicate()

        # Both daemons' counts at the same moment, the end of the window:
        # what the script does next (reading the capture) is not the soak.
        after_halo = {n: halo_transitions(lab, n) for n in before_halo}
        after_ka = {n: ka_entering(lab, n, mark) for n, mark in ka_marks.items()}
        window_end = time.time()
        gaps, counts = advert_gaps(pcap)
        rps = re.search(r"Requests/sec:\s+([\d.]+)", wrk_out)
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", wrk_out)
        dropped = re.search(r"(\d+) packets dropped by kernel", cap_err or "")

        print(f"duration {a.duration} s, wrk -t2 -c{a.connections} through 192.0.2.100: "
              f"{rps.group(1) if rps else '-'} requests/s{'; ' + errors.group(0) if errors else ''}")
        print(f"load average at start {' '.join(load_start)}, at end {' '.join(load_end)}, "
              f"1-min samples every 10 s: min {min(loads, default=float('nan')):.1f}, "
              f"max {max(loads, default=float('nan')):.1f}")
        print(f"CPU time stolen by the hypervisor (a VM's vCPU not running), per 10 s, the most "
              f"of any one CPU: median {100 * sorted(steals)[len(steals) // 2] if steals else float('nan'):.1f} %, "
              f"max {100 * max(steals, default=float('nan')):.1f} %")
        print(f"capture: {dropped.group(1) if dropped else '?'} packets dropped by kernel")
        print("window ended "
              + time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(window_end))
              + f".{int(window_end % 1 * 1e6):06d}Z: the log lines below stamped later are not counted")
        print("halo VRRP threads (policy, rt priority, nice): "
              + ", ".join(f"{n} {' '.join(v)}" for n, v in sched.items()))
        print()
        print(f"| pair | node | daemon | state changes | deferred | adverts sent (master) | gap p99 | p99.9 | max "
              f"| gaps > 20 ms | gaps > {MASTER_DOWN_MS:.0f} ms |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        bad = False
        for p in pairs:
            m, b, vrid, _, dm, db = PAIRS[p]
            for node, d in ((m, dm), (b, db)):
                deferred = "-"
                if d == "halo":
                    changes = (after_halo[node] - before_halo[node]
                               if None not in (after_halo[node], before_halo[node]) else "?")
                    log = lab.log(node, since=halo_marks[node])
                    deferred = log.count("proves nothing: waiting")
                    for line in log.splitlines():
                        if re.search(r" -> (MASTER|BACKUP|INIT|FAULT)|timer fired|proves nothing", line):
                            print(f"  {node}: {line.strip()}", file=sys.stderr)
                    if changes != 0 and p in ("halo", "mixed"):
                        bad = True
                else:
                    changes = after_ka[node]
                key = (vrid, ip[node])
                g = gaps.get(key, [])
                if counts[key] < 10:
                    row = f"{counts[key]} | - | - | - | - | -"
                else:
                    row = (f"{counts[key]} | {pct(g, 0.99):.1f} ms | {pct(g, 0.999):.1f} ms | {g[-1]:.1f} ms | "
                           f"{sum(1 for x in g if x > 20)} | {sum(1 for x in g if x > MASTER_DOWN_MS)}")
                print(f"| {p} | {node} | {d} | {changes} | {deferred} | {row} |", flush=True)
        return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
