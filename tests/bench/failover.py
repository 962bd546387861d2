#!/usr/bin/env python3
"""Benchmark: client-visible failover gap when the VRRP master dies.

Two routers (a halo pair, or a keepalived pair with the same timers) on a
bridge, a client pinging the VIP every 10 ms, all inside namespaces. The
master "dies" the way a Pi losing power does: its daemon is killed with
SIGKILL and its switch port goes down at the same moment (a killed daemon
alone leaves the VIP on a live interface, which still answers).

The gap is the longest time between two consecutive ping replies. Bounded:
each trial pings for at most 8 s (800 probes at 10 ms).

    sudo python3 tests/bench/failover.py [--trials 3]

Prints a Markdown table; results go into docs/benchmarks.md.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from halolab import VIP, Lab, vrrp_toml, wait_for  # noqa: E402


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


def trial(impl, interval_s):
    # lb1 192.0.2.11, lb2 192.0.2.12, client 192.0.2.2 (halo lab's addresses).
    with Lab("fb", lbs=2, backends=0) as lab:
        start(lab, impl, "lb1", 101, interval_s)
        start(lab, impl, "lb2", 100, interval_s)
        wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], 20, "lb1 master")
        time.sleep(3 * interval_s + 0.5)
        ping = lab.spawn(
            "ping", "client",
            ["ping", "-n", "-D", "-i", "0.01", "-W", "0.05", "-c", "800", "-w", "8", VIP],
            stdout=subprocess.PIPE)
        time.sleep(1.0)
        # Power loss: the cable goes quiet first, then every process of the
        # node dies at once (keepalived's children would otherwise notice
        # their parent's death and send a priority-0 advert).
        lab.cut("lb1")
        lab.kill("lb1")
        out, _ = ping.communicate(timeout=30)
        stamps = [float(m.group(1)) for m in re.finditer(r"^\[(\d+\.\d+)\].*bytes from", out, re.M)]
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        return max(gaps) if gaps else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--intervals", default="1.0,0.1", help="advert intervals in seconds, comma-separated")
    a = ap.parse_args()
    print("| daemons | advert interval | master down interval | failover gap (median of %d) | min | max |" % a.trials)
    print("|---|---|---|---|---|---|")
    for interval in [float(x) for x in a.intervals.split(",")]:
        mdi = 3 * interval + (256 - 100) * interval / 256
        for impl in ("halo", "keepalived"):
            gaps = [trial(impl, interval) for _ in range(a.trials)]
            ms = [g * 1000 for g in gaps]
            print(f"| {impl} pair | {int(interval*1000)} ms | {mdi*1000:.0f} ms | "
                  f"{statistics.median(ms):.0f} ms | {min(ms):.0f} ms | {max(ms):.0f} ms |", flush=True)


if __name__ == "__main__":
    main()
