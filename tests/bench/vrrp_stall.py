#!/usr/bin/env python3
"""Benchmark: a whole-host stall of master and backup together.

A VM whose vCPUs the hypervisor does not run for a while freezes every
process at once. Here: a VRRP pair at 100 ms adverts (priorities 110/100,
master down after 360.9 ms) in a `halo lab` (own name, namespaces removed
on exit), every daemon process of both nodes SIGSTOPped in the same
instant for 0.5 s (longer than the master-down interval), the backup's
resumed first, then the master's; ten times, 1.5 s apart. Counted: state
changes of the backup (halo: the `transitions` counter; keepalived:
`Entering ... STATE` lines). Each takeover is two (it hands back at the
master's next advert).

Run for a halo pair and a keepalived pair (Debian's, its defaults):

    sudo HALO_BIN=target/release/halo python3 tests/bench/vrrp_stall.py [--stalls 10]

The halo half is also a test: tests/vrrp/test_failover.py
::test_whole_host_stall_of_master_and_backup_changes_no_state.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from halolab import VIP, Lab, vrrp_toml, wait_for  # noqa: E402

import failover  # noqa: E402 (same folder: its keepalived config)


def ka_cfg(prio):
    """keepalived at the halo pair's 100 ms adverts (failover.py's config)."""
    return failover.ka_cfg(prio, 0.1)


def daemon_pids(lab, node, name):
    """Every process named `name` in the node's namespace."""
    out = subprocess.run(["ip", "netns", "pids", lab.ns(node)], capture_output=True, text=True).stdout.split()
    pids = []
    for p in out:
        try:
            if open(f"/proc/{p}/comm").read().strip() == name:
                pids.append(int(p))
        except FileNotFoundError:
            pass
    return pids


def changes(lab, node, daemon):
    if daemon == "halo":
        v = lab.vrrp(node)
        return v["transitions"] if v else None
    return len(re.findall(r"Entering (MASTER|BACKUP|FAULT) STATE", lab.log(node, "keepalived")))


def run(daemon, stalls):
    with Lab("stl", lbs=2, backends=0) as lab:
        for n, p in (("lb1", 110), ("lb2", 100)):
            for f in ("halo.toml", "keepalived.conf"):
                try:
                    os.remove(lab.path(n, f))
                except FileNotFoundError:
                    pass
            if daemon == "halo":
                lab.write(n, "halo.toml", vrrp_toml(p, "100ms"))
            else:
                lab.write(n, "keepalived.conf", ka_cfg(p))
            lab.start(n)
        wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], 60, "lb1 master")
        time.sleep(2)
        before = changes(lab, "lb2", daemon)
        pids = {n: daemon_pids(lab, n, daemon) for n in ("lb1", "lb2")}
        assert pids["lb1"] and pids["lb2"], pids
        for _ in range(stalls):
            try:
                for n in ("lb1", "lb2"):
                    for p in pids[n]:
                        os.kill(p, signal.SIGSTOP)
                time.sleep(0.5)
            finally:
                for n in ("lb2", "lb1"):
                    for p in pids[n]:
                        os.kill(p, signal.SIGCONT)
            time.sleep(1.5)
        after = changes(lab, "lb2", daemon)
        return after - before, lab.holders(["lb1", "lb2"], VIP)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stalls", type=int, default=10)
    a = ap.parse_args()
    print("| pair | stalls of 0.5 s | backup state changes | VIP holder after |")
    print("|---|---|---|---|")
    for d in ("halo", "keepalived"):
        n, holders = run(d, a.stalls)
        print(f"| {d} | {a.stalls} | {n} | {', '.join(holders)} |", flush=True)


if __name__ == "__main__":
    main()
