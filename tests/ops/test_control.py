"""The control socket through the real binary: `halo status`, election
explanations, `halo vrrp release/reclaim`, `halo server drain/enable`, and
reloads (in place, and a bad file that changes nothing)."""

import json
import os
import signal
import tempfile
import time

import pytest

from netns import Topology, halo_bin, wait_for

VIP = "192.0.2.100"


def cfg(prio, extra=""):
    return f"""
[vrrp.VI_1]
interface = "eth0"
vrid = 51
priority = {prio}
advert_interval = "100ms"
virtual_ips = ["{VIP}/24"]
{extra}
"""


@pytest.fixture
def pair():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    with tempfile.TemporaryDirectory(prefix="halo-ops-") as tmp, Topology("op") as t:
        t.switch()
        t.host("lb1", "192.0.2.11/24")
        t.host("lb2", "192.0.2.12/24")
        for name, prio in (("lb1", 101), ("lb2", 100)):
            with open(f"{tmp}/{name}.toml", "w") as f:
                f.write(cfg(prio))
            t.spawn(name, name, [halo_bin(), "run", "--config", f"{tmp}/{name}.toml",
                                 "--socket", f"{tmp}/{name}.sock"], logdir=tmp)
        wait_for(lambda: t.holders(["lb1", "lb2"], VIP) == ["lb1"], 10, "lb1 master")
        yield t, tmp


def halo(t, tmp, node, *args, check=True):
    return t.exec(node, halo_bin(), *args, "--socket", f"{tmp}/{node}.sock", check=check)


def status(t, tmp, node):
    return json.loads(halo(t, tmp, node, "status", "--json").stdout)


def vrrp(t, tmp, node):
    return status(t, tmp, node)["vrrp"][0]


def test_status_explains_the_election(pair):
    t, tmp = pair
    wait_for(lambda: vrrp(t, tmp, "lb2")["peers"], 5, "lb2 to see lb1's adverts")
    s1, s2 = vrrp(t, tmp, "lb1"), vrrp(t, tmp, "lb2")
    assert s1["state"] == "MASTER" and s2["state"] == "BACKUP"
    assert s2["master"] == "192.0.2.11" and s2["master_priority"] == 101
    assert s2["explanation"] == "peer 192.0.2.11 has priority 101 > 100 = configured", s2
    assert s1["adverts_sent"] > 0 and s2["adverts_received"] > 0
    human = halo(t, tmp, "lb2", "status").stdout
    assert "VI_1: BACKUP" in human and "peer 192.0.2.11 has priority 101" in human


def test_release_moves_the_vip_and_reclaim_takes_it_back(pair):
    t, tmp = pair
    r = halo(t, tmp, "lb1", "vrrp", "release", "VI_1", "--for", "60s")
    assert "released" in r.stdout
    wait_for(lambda: t.holders(["lb1", "lb2"], VIP) == ["lb2"], 5, "VIP to move to lb2")
    s1 = vrrp(t, tmp, "lb1")
    assert s1["state"] == "BACKUP" and "released by operator" in s1["explanation"]
    time.sleep(1)
    assert t.holders(["lb1", "lb2"], VIP) == ["lb2"], "a released node stays backup"
    halo(t, tmp, "lb1", "vrrp", "reclaim", "VI_1")
    wait_for(lambda: t.holders(["lb1", "lb2"], VIP) == ["lb1"], 5, "lb1 to preempt back")


def test_release_for_a_while_ends_by_itself(pair):
    t, tmp = pair
    halo(t, tmp, "lb1", "vrrp", "release", "VI_1", "--for", "2s")
    wait_for(lambda: t.holders(["lb1", "lb2"], VIP) == ["lb2"], 5, "VIP to move to lb2")
    wait_for(lambda: t.holders(["lb1", "lb2"], VIP) == ["lb1"], 10, "lb1 back after 2 s")


def test_unknown_instance_is_a_clear_error(pair):
    t, tmp = pair
    r = halo(t, tmp, "lb1", "vrrp", "release", "VI_9", check=False)
    assert r.returncode == 1 and 'no VRRP instance "VI_9"' in r.stderr


def test_reload_priority_in_place_keeps_the_vip(pair):
    t, tmp = pair
    # Lower lb1 below lb2: applied in place, lb2 preempts.
    with open(f"{tmp}/lb1.toml", "w") as f:
        f.write(cfg(90))
    r = halo(t, tmp, "lb1", "reload")
    assert "in place" in r.stdout, r.stdout
    wait_for(lambda: t.holders(["lb1", "lb2"], VIP) == ["lb2"], 5, "lb2 to preempt")
    # Raise it again by SIGHUP.
    with open(f"{tmp}/lb1.toml", "w") as f:
        f.write(cfg(120))
    t.procs["lb1"].send_signal(signal.SIGHUP)
    wait_for(lambda: t.holders(["lb1", "lb2"], VIP) == ["lb1"], 5, "lb1 to preempt back")
    assert vrrp(t, tmp, "lb1")["effective_priority"] == 120


def test_bad_reload_changes_nothing(pair):
    t, tmp = pair
    with open(f"{tmp}/lb1.toml", "w") as f:
        f.write(cfg(101).replace("vrid = 51", "vrid = 300"))
    r = halo(t, tmp, "lb1", "reload", check=False)
    assert r.returncode == 1
    assert "lb1.toml:4:" in r.stderr and "vrid" in r.stderr, r.stderr
    assert t.procs["lb1"].poll() is None, "daemon keeps running"
    time.sleep(0.5)
    assert t.holders(["lb1", "lb2"], VIP) == ["lb1"]
    assert vrrp(t, tmp, "lb1")["state"] == "MASTER"


def test_second_daemon_on_the_same_socket_is_refused(pair):
    t, tmp = pair
    r = t.exec("lb1", halo_bin(), "run", "--config", f"{tmp}/lb1.toml", "--socket", f"{tmp}/lb1.sock",
               check=False, timeout=20)
    assert r.returncode != 0 and "in use by another halo" in r.stderr
