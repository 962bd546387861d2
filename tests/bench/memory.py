#!/usr/bin/env python3
"""Benchmark: idle resident memory of `halo run` with the example config
(docs/examples/halo.toml: one VRRP instance + one proxy service with health
checks), next to keepalived (VRRP only, all its processes) and HAProxy with
the equivalent configs. Each runs alone in a namespace with an eth0 on a
bridge (addresses from 192.0.2.0/24); the backends do not exist, so the
health checks fail: what is measured is the daemons' own footprint.

    sudo python3 tests/bench/memory.py

Prints a Markdown table of VmRSS (KiB) after 5 s idle, summed over every
process of the daemon.
"""

import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from halolab import Lab  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

KEEPALIVED = """global_defs {
  router_id lb1
  vrrp_version 3
}
vrrp_instance VI_1 {
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority 101
  advert_int 1
  virtual_ipaddress {
    192.0.2.100/24
  }
}
"""

HAPROXY = """global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend web
  bind 0.0.0.0:80
  default_backend web
backend web
  balance roundrobin
  option httpchk GET /health
  server web1 192.0.2.21:80 check inter 2000 rise 2 fall 3
  server web2 192.0.2.22:80 check inter 2000 rise 2 fall 3
  server web3 192.0.2.23:80 check inter 2000 rise 2 fall 3 weight 2
"""


def rss_tree(ns_pids):
    total = 0
    for pid in ns_pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def measure(start):
    """`start(lab)` runs one daemon on lb1 (192.0.2.11) of a one-LB lab
    without backends; lb1's namespace holds nothing else."""
    with Lab("mem", lbs=1, backends=0) as lab:
        start(lab)
        time.sleep(5)
        pids = subprocess.run(
            ["ip", "netns", "pids", lab.ns("lb1")], capture_output=True, text=True).stdout.split()
        return rss_tree(pids), len(pids)


def main():
    rows = []

    def halo(lab):
        # `halo lab start lb1`: halo run --config DIR/lb1/halo.toml.
        with open(os.path.join(ROOT, "docs/examples/halo.toml")) as f:
            lab.run_halo("lb1", f.read())
    rows.append(("halo (VRRP + proxy + checks, example config)",) + measure(halo))

    def ka(lab):
        # keepalived alone: no halo.toml, `halo lab start` runs keepalived.conf.
        try:
            os.remove(lab.path("lb1", "halo.toml"))
        except FileNotFoundError:
            pass
        lab.write("lb1", "keepalived.conf", KEEPALIVED)
        lab.start("lb1")
    rows.append(("keepalived (VRRP only)",) + measure(ka))

    def hap(lab):
        cfg = lab.write("lb1", "haproxy.cfg", HAPROXY)
        lab.spawn("hap", "lb1", [shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f", cfg])
    rows.append(("HAProxy (proxy + checks, 1 thread)",) + measure(hap))

    print("| daemon | processes | idle RSS |")
    print("|---|---|---|")
    for name, kib, n in rows:
        print(f"| {name} | {n} | {kib / 1024:.1f} MiB |")


if __name__ == "__main__":
    main()
