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
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from netns import Topology, halo_bin, wait_for  # noqa: E402

VIP = "192.0.2.100"
IPS = {"lb1": "192.0.2.11", "lb2": "192.0.2.12"}


def halo_cfg(prio, interval):
    return f"""[vrrp.VI_1]
interface = "eth0"
vrid = 51
priority = {prio}
advert_interval = "{interval}"
virtual_ips = ["{VIP}/24"]
"""


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


def start(t, impl, name, prio, interval_s, tmp):
    if impl == "halo":
        path = os.path.join(tmp, f"{name}.toml")
        with open(path, "w") as f:
            f.write(halo_cfg(prio, f"{int(interval_s * 1000)}ms"))
        t.spawn(name, name, [halo_bin(), "run", "--config", path, "--socket", os.path.join(tmp, f"{name}.sock")], logdir=tmp)
    else:
        path = os.path.join(tmp, f"{name}.conf")
        with open(path, "w") as f:
            f.write(ka_cfg(prio, interval_s))
        ka = shutil.which("keepalived") or "/usr/sbin/keepalived"
        t.spawn(name, name, [ka, "--dont-fork", "--log-console", "--vrrp", "-f", path,
                             "-p", os.path.join(tmp, f"{name}.pid"),
                             "-r", os.path.join(tmp, f"{name}.vpid"),
                             "-c", os.path.join(tmp, f"{name}.cpid")], logdir=tmp)


def trial(impl, interval_s):
    with tempfile.TemporaryDirectory(prefix="halo-bench-") as tmp, Topology("fb") as t:
        t.switch()
        t.host("lb1", IPS["lb1"] + "/24")
        t.host("lb2", IPS["lb2"] + "/24")
        t.host("client", "192.0.2.2/24")
        start(t, impl, "lb1", 101, interval_s, tmp)
        start(t, impl, "lb2", 100, interval_s, tmp)
        wait_for(lambda: t.holders(["lb1", "lb2"], VIP) == ["lb1"], 20, "lb1 master")
        time.sleep(3 * interval_s + 0.5)
        ping = subprocess.Popen(
            ["ip", "netns", "exec", t.ns("client"), "ping", "-n", "-D", "-i", "0.01",
             "-W", "0.05", "-c", "800", "-w", "8", VIP],
            stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        # Power loss: the cable goes quiet first, then every process of the
        # node dies at once (keepalived's children would otherwise notice
        # their parent's death and send a priority-0 advert).
        port = t.port_of("lb1")
        t.exec("sw", "ip", "link", "set", port, "down")
        for pid in subprocess.run(["ip", "netns", "pids", t.ns("lb1")],
                                  capture_output=True, text=True).stdout.split():
            os.kill(int(pid), signal.SIGKILL)
        out, _ = ping.communicate(timeout=30)
        stamps = [float(m.group(1)) for m in re.finditer(r"^\[(\d+\.\d+)\].*bytes from", out, re.M)]
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        return max(gaps) if gaps else float("nan")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


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
