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
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from netns import Topology, halo_bin  # noqa: E402

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


def measure(name, cmd_for):
    with tempfile.TemporaryDirectory(prefix="halo-mem-") as tmp, Topology("mem") as t:
        t.switch()
        t.host("n", "192.0.2.11/24")
        t.spawn(name, "n", cmd_for(tmp), logdir=tmp)
        time.sleep(5)
        pids = t.exec("n", "true") and subprocess.run(
            ["ip", "netns", "pids", t.ns("n")], capture_output=True, text=True).stdout.split()
        return rss_tree(pids), len(pids)


def main():
    rows = []
    example = os.path.join(ROOT, "docs/examples/halo.toml")
    rows.append(("halo (VRRP + proxy + checks, example config)",) + measure(
        "halo", lambda tmp: [halo_bin(), "run", "--config", example, "--socket", f"{tmp}/h.sock"]))

    def ka(tmp):
        with open(f"{tmp}/k.conf", "w") as f:
            f.write(KEEPALIVED)
        return [shutil.which("keepalived") or "/usr/sbin/keepalived", "--dont-fork", "--vrrp",
                "-f", f"{tmp}/k.conf", "-p", f"{tmp}/k.pid", "-r", f"{tmp}/v.pid", "-c", f"{tmp}/c.pid"]
    rows.append(("keepalived (VRRP only)",) + measure("ka", ka))

    def hap(tmp):
        with open(f"{tmp}/h.cfg", "w") as f:
            f.write(HAPROXY)
        return [shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f", f"{tmp}/h.cfg"]
    rows.append(("HAProxy (proxy + checks, 1 thread)",) + measure("hap", hap))

    print("| daemon | processes | idle RSS |")
    print("|---|---|---|")
    for name, kib, n in rows:
        print(f"| {name} | {n} | {kib / 1024:.1f} MiB |")


if __name__ == "__main__":
    main()
