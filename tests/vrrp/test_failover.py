"""VRRP failover between real halo processes in network namespaces.

Each test builds its own lab with `halo lab` (tests/halolab.py): two or
three LBs on one switch, all inside namespaces; each LB's halo.toml is
written by the test and started with `halo lab start`. Each test checks
who holds the VIP on its interface: the kernel's own view, not halo's.
Timings are not asserted (see tests/bench/ for those); the waits below are
generous upper bounds so a slow CI machine does not fail them.
"""

import os
import re
import subprocess
import time

import pytest

from halolab import LB as LBS, VIP, Lab, halo_bin, vrrp_toml, wait_for


def cfg(priority, interval="100ms", extra="", vips=(VIP + "/24",), version=3):
    return vrrp_toml(priority, interval, extra, vips, version)


@pytest.fixture
def lab_of():
    """Build a lab of the given shape; always taken down after the test."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    labs = []

    def make(lbs=2, **kw):
        lab = Lab("vr", lbs=lbs, **kw).__enter__()
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.close()


@pytest.fixture
def topo(lab_of):
    return lab_of(2)


def one_master(t, names, expect, vip=VIP, timeout=10):
    """Wait until `expect` is the only holder of the VIP. Routers started a
    few ms apart may briefly elect the wrong one before the preemption the
    test expects; that transient is not a failure."""
    wait_for(lambda: t.holders(names, vip) == [expect], timeout, f"{expect} as the only holder of {vip}")
    return expect


def pair(t, p1=101, p2=100, extra1="", extra2="", **kw):
    t.run_halo("lb1", cfg(p1, extra=extra1, **kw))
    t.run_halo("lb2", cfg(p2, extra=extra2, **kw))


def test_higher_priority_wins_and_only_it_holds_the_vip(topo):
    pair(topo)
    one_master(topo, ["lb1", "lb2"], "lb1")
    time.sleep(1)  # stable: no flapping over ten advert intervals
    assert topo.holders(["lb1", "lb2"], VIP) == ["lb1"]
    log = topo.log("lb1")
    assert "-> MASTER" in log, log


def test_kill_9_master_backup_takes_over_and_old_master_preempts_back(topo):
    pair(topo)
    one_master(topo, ["lb1", "lb2"], "lb1")
    topo.kill("lb1")
    wait_for(lambda: VIP in topo.addrs("lb2"), 5, "lb2 to take the VIP after kill -9")
    assert "no advert" in topo.log("lb2")
    # lb1 comes back: a crash left its VIP behind; halo clears it at start,
    # then preempts (priority 101 > 100).
    topo.start("lb1")
    wait_for(lambda: topo.holders(["lb1", "lb2"], VIP) == ["lb1"], 10, "lb1 to preempt back")


def test_nopreempt_keeps_the_current_master(topo):
    pair(topo, extra1="nopreempt = true", extra2="nopreempt = true")
    one_master(topo, ["lb1", "lb2"], "lb1")
    topo.stop("lb1")
    wait_for(lambda: topo.holders(["lb1", "lb2"], VIP) == ["lb2"], 5, "lb2 master")
    topo.start("lb1")
    time.sleep(2)
    assert topo.holders(["lb1", "lb2"], VIP) == ["lb2"], "lb1 must not preempt with nopreempt"


def test_clean_stop_hands_over_and_removes_vip(topo):
    pair(topo, interval="1s")
    one_master(topo, ["lb1", "lb2"], "lb1")
    topo.stop("lb1")
    assert "halo stopped" in topo.log("lb1"), topo.log("lb1")
    assert VIP not in topo.addrs("lb1"), "VIP removed on clean stop"
    # The takeover reason proves the priority-0 path (skew time) was taken
    # rather than master-down; how fast it is goes in the benchmark.
    wait_for(lambda: VIP in topo.addrs("lb2"), 10, "lb2 to take over after priority 0")
    assert "priority 0" in topo.log("lb2")


def test_link_down_on_master_moves_vip(topo):
    pair(topo)
    one_master(topo, ["lb1", "lb2"], "lb1")
    topo.exec("lb1", "ip", "link", "set", "eth0", "down")
    wait_for(lambda: VIP in topo.addrs("lb2"), 5, "lb2 to take over when lb1's link is down")
    assert "FAULT" in topo.log("lb1")
    topo.exec("lb1", "ip", "link", "set", "eth0", "up")
    wait_for(lambda: topo.holders(["lb1", "lb2"], VIP) == ["lb1"], 10, "lb1 back as master")


def test_three_nodes_elect_highest_then_next(lab_of):
    t = lab_of(3)
    t.run_halo("lb1", cfg(90))
    t.run_halo("lb2", cfg(110))
    t.run_halo("lb3", cfg(100))
    one_master(t, ["lb1", "lb2", "lb3"], "lb2")
    t.kill("lb2")
    wait_for(lambda: VIP in t.addrs("lb3"), 5, "lb3 (next highest) to take over")
    time.sleep(0.5)
    assert VIP not in t.addrs("lb1")


def test_unicast_peers(topo):
    t = topo
    t.run_halo("lb1", cfg(101, extra=f'unicast_peers = ["{LBS["lb2"]}"]'))
    t.run_halo("lb2", cfg(100, extra=f'unicast_peers = ["{LBS["lb1"]}"]'))
    one_master(t, ["lb1", "lb2"], "lb1")
    t.stop("lb1")
    wait_for(lambda: VIP in t.addrs("lb2"), 5, "lb2 to take over in unicast mode")


def test_ipv6_vip_with_v3(lab_of):
    t = lab_of(2, ipv6=True)
    vip6 = "2001:db8::100"
    t.run_halo("lb1", cfg(101, vips=(vip6 + "/64",)))
    t.run_halo("lb2", cfg(100, vips=(vip6 + "/64",)))
    one_master(t, ["lb1", "lb2"], "lb1", vip=vip6)
    t.kill("lb1")
    wait_for(lambda: vip6 in t.addrs("lb2"), 5, "lb2 to take the IPv6 VIP")


def client_mac_for_vip(t):
    r = t.exec("client", "ip", "neigh", "show", VIP, "dev", "eth0", check=False)
    parts = r.stdout.split()
    return parts[parts.index("lladdr") + 1] if "lladdr" in parts else None


def test_split_brain_heals_to_one_master(topo):
    pair(topo)
    one_master(topo, ["lb1", "lb2"], "lb1")
    topo.exec("client", "ping", "-c", "1", "-W", "1", VIP)
    assert client_mac_for_vip(topo) == topo.mac("lb1")
    # Partition the LBs from each other only (`halo lab cut lbs`: bridge
    # port isolation, links stay up, so neither goes to FAULT). Both become
    # master: split brain, and lb2's gratuitous ARP points the client at lb2.
    topo.cut("lbs")
    wait_for(lambda: topo.holders(["lb1", "lb2"], VIP) == ["lb1", "lb2"], 5, "split brain")
    wait_for(lambda: client_mac_for_vip(topo) == topo.mac("lb2"), 5, "client to follow lb2's GARP")
    topo.heal("lbs")
    wait_for(lambda: topo.holders(["lb1", "lb2"], VIP) == ["lb1"], 10, "split brain to heal")
    # The winner re-announces the VIP when it hears the loser's advert;
    # without that the client keeps the loser's MAC until its entry expires.
    wait_for(lambda: client_mac_for_vip(topo) == topo.mac("lb1"), 3, "client to learn lb1's MAC again")


def test_cable_cut_at_switch_is_a_fault(topo):
    pair(topo)
    one_master(topo, ["lb1", "lb2"], "lb1")
    topo.cut("lb1")  # the switch port goes down: carrier lost on lb1
    wait_for(lambda: topo.holders(["lb1", "lb2"], VIP) == ["lb2"], 5, "lb2 master, lb1 in FAULT without the VIP")
    topo.heal("lb1")
    wait_for(lambda: topo.holders(["lb1", "lb2"], VIP) == ["lb1"], 10, "lb1 back as master")


def test_missing_interface_is_a_clear_error(lab_of):
    t = lab_of(1)
    path = t.write("lb1", "bad.toml", cfg(101).replace('"eth0"', '"eth9"'))
    r = t.exec("lb1", halo_bin(), "run", "--config", path, "--socket", t.path("lb1", "bad.sock"), check=False)
    assert r.returncode != 0
    assert "eth9" in r.stderr


def test_other_router_with_different_vip_set_is_named(topo):
    topo.run_halo("lb1", cfg(101))
    topo.run_halo("lb2", cfg(100, vips=("192.0.2.200/24",)))
    wait_for(lambda: "different VIP set" in topo.log("lb1") or "different VIP set" in topo.log("lb2"),
             5, "a warning about the VIP set")
    log = topo.log("lb2")
    assert "192.0.2.11 uses VRID 51 with a different VIP set" in log, log


def test_runs_unprivileged_with_only_net_raw_and_net_admin(lab_of):
    t = lab_of(1)
    path = t.write("lb1", "halo.toml", cfg(101))
    # The control socket goes where nobody may create it.
    os.chmod(t.path("lb1", ""), 0o777)
    t.spawn("lb1", "lb1", [
        "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
        "--inh-caps=-all,+net_raw,+net_admin", "--ambient-caps=-all,+net_raw,+net_admin",
        "--bounding-set=-all,+net_raw,+net_admin",
        halo_bin(), "run", "--config", path, "--socket", t.path("lb1", "halo.sock")])
    wait_for(lambda: VIP in t.addrs("lb1"), 10, "unprivileged halo to become master")


@pytest.mark.parametrize("cap", ["net_raw", "net_admin"])
def test_missing_capability_is_named(lab_of, cap):
    t = lab_of(1)
    path = t.write("lb1", "halo.toml", cfg(101))
    r = t.exec("lb1", "setpriv", f"--bounding-set=-{cap}", f"--inh-caps=-{cap}",
               halo_bin(), "run", "--config", path, "--socket", t.path("lb1", "x.sock"), check=False)
    assert r.returncode == 1
    assert f"CAP_{cap.upper()}" in r.stderr, r.stderr


def test_clean_stop_keeps_answering_until_the_new_master_is_heard(topo):
    # 1 s adverts: the backup takes over after its skew time (0.61 s). The
    # leaving master keeps the VIP until it hears the new master, so a
    # client pinging every 20 ms loses nothing (removing the VIP at once
    # lost about 30 pings here).
    pair(topo, interval="1s")
    one_master(topo, ["lb1", "lb2"], "lb1")
    ping = topo.spawn("ping", "client", ["ping", "-n", "-i", "0.02", "-W", "1", "-c", "150", VIP],
                      stdout=subprocess.PIPE)
    time.sleep(1)
    topo.stop("lb1")
    assert "halo stopped" in topo.log("lb1")
    out, _ = ping.communicate(timeout=30)
    wait_for(lambda: topo.holders(["lb1", "lb2"], VIP) == ["lb2"], 5, "lb2 master")
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    sent, got = int(m.group(1)), int(m.group(2))
    assert sent - got <= 2, out
    assert "is master now" in topo.log("lb1")
