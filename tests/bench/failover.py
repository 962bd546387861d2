#!/usr/bin/env python3
"""Benchmark: client-visible failover gap when the VRRP master dies.

Two routers (a halo pair, or a keepalived pair with the same timers) on a
bridge, a client pinging the VIP every 2 ms (`--probe`), all inside
namespaces. The master "dies" the way a Pi losing power does: its daemon
is killed with SIGKILL and its switch port goes down at the same moment (a
killed daemon alone leaves the VIP on a live interface, which still
answers).

The gap is the longest time between two consecutive ping replies (ICMP
echo, no retransmission to wait for: unlike a TCP client whose lost SYN
waits a whole second, the gap is what the network did, to the probe
interval). Bounded: each trial pings for 8 s (4,000 probes at 2 ms).

The probe's interval bounds how exactly the gap is seen: the last reply
before the master died came up to one interval before it, the first after
up to one interval after the VIP moved. Until session 11 the probe was
iputils ping every 10 ms, which made a 10 ms advert's gap read up to
10 ms long; ping itself cannot go finer here (icmp_probe.py says why).

A capture on the switch's bridge (kernel timestamps) splits the gap:
"detect" is the new master's first advert after the old master's last one
(Master_Down_Interval plus how late the backup's timer fired), "announce"
the new master's first gratuitous ARP for the VIP after its first advert.
The rest of the gap is when in the old master's advert interval it died
(the backup's timer runs from its last advert) and the probe's interval.
The probe runs at SCHED_RR 20 so a loaded machine does not delay it.

    sudo python3 tests/bench/failover.py [--trials 3] [--intervals 0.01] [--probe 0.002]

Prints a Markdown table; results go into docs/benchmarks.md.
"""

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from halolab import VIP, Lab, vrrp_toml, wait_for  # noqa: E402

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "icmp_probe.py")


def halo_cfg(prio, interval):
    return vrrp_toml(prio, interval)


def ka_cfg(prio, interval_s):
    return f"""global_defs {{
  router_id r{prio}
  vrrp_version 3
  vrrp_garp_master_delay 0
}}
vrrp_instance VI_1 {{
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority {prio}
  advert_int {interval_s}
  virtual_ipaddress {{
    {VIP}/24
  }}
}}
"""


def start(lab, impl, name, prio, interval_s):
    """The node's config into its lab directory, then `halo lab start`:
    halo from halo.toml, or keepalived alone from keepalived.conf."""
    if impl == "halo":
        lab.write(name, "halo.toml", halo_cfg(prio, f"{int(interval_s * 1000)}ms"))
    else:
        try:
            os.remove(lab.path(name, "halo.toml"))
        except FileNotFoundError:
            pass
        lab.write(name, "keepalived.conf", ka_cfg(prio, interval_s))
    lab.start(name)


def capture_split(pcap):
    """(detect, announce) in seconds from the bridge's capture, or NaN."""
    out = subprocess.run(["tcpdump", "-r", pcap, "-n", "-tt"], capture_output=True, text=True).stdout
    last_old = first_new = garp = None
    for line in out.splitlines():
        parts = line.split(" ", 1)
        try:
            t = float(parts[0])
        except ValueError:
            continue
        rest = parts[1] if len(parts) > 1 else ""
        if "192.0.2.11 > 224.0.0.18" in rest and first_new is None:
            last_old = t
        elif "192.0.2.12 > 224.0.0.18" in rest and "prio 0," not in rest and first_new is None:
            first_new = t
        elif first_new is not None and garp is None and re.search(
                rf"who-has {re.escape(VIP)}( \(\S+\))? tell {re.escape(VIP)}", rest):
            garp = t
    nan = float("nan")
    detect = first_new - last_old if first_new and last_old else nan
    announce = garp - first_new if garp and first_new else nan
    return detect, announce


def trial(impl, interval_s, probe_s):
    # lb1 192.0.2.11, lb2 192.0.2.12, client 192.0.2.2 (halo lab's addresses).
    with Lab("fb", lbs=2, backends=0) as lab, tempfile.TemporaryDirectory() as tmp:
        start(lab, impl, "lb1", 101, interval_s)
        start(lab, impl, "lb2", 100, interval_s)
        wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], 20, "lb1 master")
        time.sleep(3 * interval_s + 0.5)
        pcap = os.path.join(tmp, "f.pcap")
        cap = subprocess.Popen(["ip", "netns", "exec", lab.ns("switch"), "tcpdump", "-i", "br0", "-n",
                                "-w", pcap, "ip proto 112 or arp"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ping = lab.spawn(
            "ping", "client",
            # Real-time, so a loaded machine does not delay the probes
            # themselves (a late probe widens the gap the network did not make).
            ["chrt", "-r", "20", sys.executable, PROBE, VIP, str(probe_s), "8"],
            stdout=subprocess.PIPE)
        time.sleep(1.0)
        # Power loss: the cable goes quiet first, then every process of the
        # node dies at once (keepalived's children would otherwise notice
        # their parent's death and send a priority-0 advert).
        lab.cut("lb1")
        lab.kill("lb1")
        out, _ = ping.communicate(timeout=30)
        cap.send_signal(signal.SIGINT)
        try:
            cap.wait(timeout=30)
        except subprocess.TimeoutExpired:
            cap.kill()
            cap.wait()
        detect, announce = capture_split(pcap)
        stamps = [float(line.split()[0]) for line in out.splitlines() if line.strip()]
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        return (max(gaps) if gaps else float("nan")), detect, announce


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--intervals", default="1.0,0.1", help="advert intervals in seconds, comma-separated")
    ap.add_argument("--probe", type=float, default=0.002, help="the client's probe interval in seconds")
    a = ap.parse_args()
    if not 0.0005 <= a.probe <= 1:
        ap.error("--probe: between 0.0005 and 1 second")
    print("| daemons | advert interval | master down interval | failover gap, %g ms probes (median of %d) "
          "| p90 | min | max | detect (median, max) | announce (median) |" % (a.probe * 1000, a.trials))
    print("|---|---|---|---|---|---|---|---|---|")
    for interval in [float(x) for x in a.intervals.split(",")]:
        mdi = 3 * interval + (256 - 100) * interval / 256
        # Alternating, so a change of the machine's load meets both alike.
        runs = {"halo": [], "keepalived": []}
        for _ in range(a.trials):
            for impl in runs:
                runs[impl].append(trial(impl, interval, a.probe))
        for impl, rs in runs.items():
            ms = sorted(r[0] * 1000 for r in rs)
            det = sorted(r[1] * 1000 for r in rs if r[1] == r[1])
            ann = sorted(r[2] * 1000 for r in rs if r[2] == r[2])
            p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
            print(f"| {impl} pair | {int(interval*1000)} ms | {mdi*1000:.1f} ms | "
                  f"{statistics.median(ms):.0f} ms | {p90:.0f} ms | {ms[0]:.0f} ms | {ms[-1]:.0f} ms | "
                  f"{statistics.median(det) if det else float('nan'):.1f}, {max(det, default=float('nan')):.1f} ms | "
                  f"{statistics.median(ann) if ann else float('nan'):.2f} ms |", flush=True)


if __name__ == "__main__":
    main()
