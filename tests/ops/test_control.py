"""The control socket through the real binary: `halo status`, election
explanations, `halo vrrp release/reclaim`, `halo server drain/enable`, and
reloads (in place, and a bad file that changes nothing)."""

import json
import os
import signal

import pytest

from halolab import VIP, Lab, always_until, halo_bin, vrrp_toml, wait_for

# Upper bounds only; generous for a loaded 2-core machine.
T = 30


def cfg(prio, extra=""):
    return vrrp_toml(prio, extra=extra)


@pytest.fixture
def pair():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    with Lab("op", lbs=2) as lab:
        # `halo lab start` runs `halo run --config DIR/lbN/halo.toml
        # --socket DIR/lbN/halo.sock`, log DIR/lbN/halo.log.
        for name, prio in (("lb1", 101), ("lb2", 100)):
            lab.run_halo(name, cfg(prio))
        wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 master")
        # Started together, both may time out within a millisecond and be
        # master for a moment even after the VIP was seen on lb1 alone: the
        # election is over when lb2 is BACKUP and knows lb1.
        def settled():
            v = lab.vrrp("lb2")
            return v is not None and v["state"] == "BACKUP" and v["master"] == "192.0.2.11"
        wait_for(settled, T, "lb2 backup of lb1")
        wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 the only master")
        yield lab


def sock(lab, node):
    return lab.path(node, "halo.sock")


def halo(lab, node, *args, check=True):
    return lab.exec(node, halo_bin(), *args, "--socket", sock(lab, node), check=check)


def status(lab, node):
    return json.loads(halo(lab, node, "status", "--json").stdout)


def vrrp(lab, node):
    return status(lab, node)["vrrp"][0]


def daemon_pid(lab, node):
    """The pid of the halo `halo lab start` started (DIR/NODE/halo.pid)."""
    with open(lab.path(node, "halo.pid")) as f:
        return int(f.read())


def heard(lab, node, n):
    """`until` for always_until: `node` has heard `n` more adverts from now
    on, so a window spans n advert intervals however slow the machine is."""
    start = vrrp(lab, node)["adverts_received"]
    return lambda: vrrp(lab, node)["adverts_received"] >= start + n


def running(pid):
    """The process is there and has not exited (a zombie has exited: the
    detached daemon's parent is not this test, so it may not be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            comm, rest = f.read().rsplit(")", 1)
    except FileNotFoundError:
        return False
    return comm.split("(", 1)[1] == "halo" and rest.split()[0] != "Z"


def test_status_explains_the_election(pair):
    lab = pair
    wait_for(lambda: vrrp(lab, "lb2")["peers"], T, "lb2 to see lb1's adverts")
    s1, s2 = vrrp(lab, "lb1"), vrrp(lab, "lb2")
    assert s1["state"] == "MASTER" and s2["state"] == "BACKUP"
    assert s2["master"] == "192.0.2.11" and s2["master_priority"] == 101
    assert s2["explanation"] == "peer 192.0.2.11 has priority 101 > 100 = configured", s2
    assert s1["adverts_sent"] > 0 and s2["adverts_received"] > 0
    human = halo(lab, "lb2", "status").stdout
    assert "VI_1: BACKUP" in human and "peer 192.0.2.11 has priority 101" in human


def test_release_moves_the_vip_and_reclaim_takes_it_back(pair):
    lab = pair
    r = halo(lab, "lb1", "vrrp", "release", "VI_1", "--for", "60s")
    assert "released" in r.stdout
    wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb2"], T, "VIP to move to lb2")
    # lb1 removes the VIP at the end of its hand-over and publishes its new
    # state just after: wait for the state, do not sample it once.
    def released():
        s = vrrp(lab, "lb1")
        return s["state"] == "BACKUP" and "released by operator" in s["explanation"]
    wait_for(released, T, "lb1 to report BACKUP, released by operator")
    # A released node stays backup: for ten of lb2's adverts it hears.
    always_until(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb2"] and released(), heard(lab, "lb1", 10), T,
                 "a released node stays backup")
    halo(lab, "lb1", "vrrp", "reclaim", "VI_1")
    wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 to preempt back")


def test_release_for_a_while_ends_by_itself(pair):
    lab = pair
    mark1, mark2 = lab.log_mark("lb1"), lab.log_mark("lb2")
    halo(lab, "lb1", "vrrp", "release", "VI_1", "--for", "2s")
    # Sampling who holds the VIP could miss lb2's 2 s on a slow machine;
    # the logs say in order what happened (the kernel's view of a release
    # is test_release_moves_the_vip_and_reclaim_takes_it_back's).
    wait_for(lambda: "VI_1: release over" in lab.log("lb1", since=mark1), T, "lb1's release to end")
    wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 back after 2 s")
    log2 = lab.log("lb2", since=mark2)
    assert "VI_1 BACKUP -> MASTER: master 192.0.2.11 sent priority 0 (shutdown)" in log2, log2
    assert "VI_1 MASTER -> BACKUP" in log2.split("BACKUP -> MASTER", 1)[1], log2
    log1 = lab.log("lb1", since=mark1)
    assert log1.index("released by operator for 2s") < log1.index("release over") \
        < log1.index("BACKUP -> MASTER"), log1


def test_unknown_instance_is_a_clear_error(pair):
    lab = pair
    r = halo(lab, "lb1", "vrrp", "release", "VI_9", check=False)
    assert r.returncode == 1 and 'no VRRP instance "VI_9"' in r.stderr


def test_reload_priority_in_place_keeps_the_vip(pair):
    lab = pair
    # Lower lb1 below lb2: applied in place, lb2 preempts.
    lab.write("lb1", "halo.toml", cfg(90))
    r = halo(lab, "lb1", "reload")
    assert "in place" in r.stdout, r.stdout
    wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb2"], T, "lb2 to preempt")
    # Raise it again by SIGHUP.
    lab.write("lb1", "halo.toml", cfg(120))
    os.kill(daemon_pid(lab, "lb1"), signal.SIGHUP)
    wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 to preempt back")
    # The VIP is added before the status is published: wait for it.
    wait_for(lambda: vrrp(lab, "lb1")["effective_priority"] == 120, T, "lb1 to report priority 120")


def test_bad_reload_changes_nothing(pair):
    lab = pair
    pid = daemon_pid(lab, "lb1")
    lab.write("lb1", "halo.toml", cfg(101).replace("vrid = 51", "vrid = 300"))
    r = halo(lab, "lb1", "reload", check=False)
    assert r.returncode == 1
    assert f"{lab.path('lb1', 'halo.toml')}:4:" in r.stderr and "vrid" in r.stderr, r.stderr
    assert running(pid), "daemon keeps running"
    # Nothing changes: lb1 stays the only holder and MASTER for five of its
    # adverts heard by lb2.
    always_until(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"] and vrrp(lab, "lb1")["state"] == "MASTER",
                 heard(lab, "lb2", 5), T, "lb1 the only holder and MASTER")
    assert running(pid), "daemon keeps running"


def test_second_daemon_on_the_same_socket_is_refused(pair):
    lab = pair
    r = lab.exec("lb1", halo_bin(), "run", "--config", lab.path("lb1", "halo.toml"), "--socket", sock(lab, "lb1"),
                 check=False, timeout=20)
    assert r.returncode != 0 and "in use by another halo" in r.stderr
