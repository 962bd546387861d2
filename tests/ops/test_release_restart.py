"""`halo vrrp release` survives a restart of halo (kill -9 or SIGTERM):
the released node comes back as a backup and stays one until it is
reclaimed or the release runs out. The release is kept in a file beside
the control socket (DIR/lb1/release-VI_1 here, /run/halo/ under systemd).

Two real halos on a `halo lab` pair; the kernel's view (who holds the VIP)
and halo's logs are what is checked."""

import json
import os

import pytest

from halolab import VIP, Lab, always_until, halo_bin, vrrp_toml, wait_for

# Upper bounds only; generous for a loaded 2-core machine.
T = 30


@pytest.fixture
def pair():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    with Lab("rel", lbs=2) as lab:
        for name, prio in (("lb1", 101), ("lb2", 100)):
            lab.run_halo(name, vrrp_toml(prio))
        def settled():
            v = lab.vrrp("lb2")
            return v is not None and v["state"] == "BACKUP" and v["master"] == "192.0.2.11"
        wait_for(settled, T, "lb2 backup of lb1")
        wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 the only master")
        yield lab


def halo(lab, node, *args, check=True):
    return lab.exec(node, halo_bin(), *args, "--socket", lab.path(node, "halo.sock"), check=check)


def vrrp(lab, node):
    return json.loads(halo(lab, node, "status", "--json").stdout)["vrrp"][0]


def heard(lab, node, n):
    """`until` for always_until: `node` has heard `n` more adverts from now on."""
    start = vrrp(lab, node)["adverts_received"]
    return lambda: vrrp(lab, node)["adverts_received"] >= start + n


def released(lab):
    v = lab.vrrp("lb1")
    return v is not None and v["state"] == "BACKUP" and "released by operator" in v["explanation"]


def release_and_wait(lab, *args):
    halo(lab, "lb1", "vrrp", "release", "VI_1", *args)
    wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb2"], T, "VIP to move to lb2")
    wait_for(lambda: released(lab), T, "lb1 released")


def restart(lab, how):
    """kill -9 (a crash) or SIGTERM (systemctl restart) lb1's halo, start it
    again and wait until it answers."""
    if how == "kill":
        lab.kill("lb1")
    else:
        lab.stop("lb1")
    wait_for(lambda: lab.vrrp("lb1") is None, T, "lb1's halo gone")
    lab.start("lb1")
    wait_for(lambda: lab.vrrp("lb1") is not None, T, "lb1's halo back")


@pytest.mark.parametrize("how", ["kill", "term"])
def test_release_survives_a_restart_until_reclaimed(pair, how):
    lab = pair
    release_and_wait(lab)
    mark = lab.log_mark("lb1")
    restart(lab, how)
    # Back as a released backup, for twenty of lb2's adverts (lb1 has the
    # higher priority and would preempt at once if the release were lost).
    wait_for(lambda: released(lab), T, "lb1 released after the restart")
    always_until(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb2"] and released(lab), heard(lab, "lb1", 20), T,
                 "a released node stays backup across a restart")
    assert "VI_1: still released (kept in" in lab.log("lb1", since=mark)
    assert os.path.exists(lab.path("lb1", "release-VI_1"))
    halo(lab, "lb1", "vrrp", "reclaim", "VI_1")
    assert not os.path.exists(lab.path("lb1", "release-VI_1")), "reclaim forgets the release"
    wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 to preempt back")
    # Reclaimed is reclaimed: another restart keeps lb1 master.
    restart(lab, how)
    wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 master after a restart")


def test_a_timed_release_ends_on_time_after_a_restart(pair):
    lab = pair
    mark = lab.log_mark("lb1")
    # Long enough to outlast the restart on a slow machine; the log then
    # says in order what happened.
    release_and_wait(lab, "--for", "8s")
    restart(lab, "kill")
    wait_for(lambda: "VI_1: release over" in lab.log("lb1", since=mark), T, "lb1's release to end")
    wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 back when the release ran out")
    log = lab.log("lb1", since=mark)
    restarted = log.index("VI_1: still released (kept in")
    assert "s more" in log[restarted:].splitlines()[0], log
    assert restarted < log.index("VI_1: release over") < log.rindex("BACKUP -> MASTER"), log
    # The expired release is gone: the next restart does not bring it back.
    mark = lab.log_mark("lb1")
    restart(lab, "kill")
    wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 master after another restart")
    assert "still released" not in lab.log("lb1", since=mark)
    assert not os.path.exists(lab.path("lb1", "release-VI_1")), "an expired release file is removed when read"


def test_a_damaged_release_file_is_reported_and_ignored(pair):
    lab = pair
    lab.stop("lb1")
    wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb2"], T, "VIP to move to lb2")
    lab.write("lb1", "release-VI_1", "garbage\n")
    mark = lab.log_mark("lb1")
    lab.start("lb1")
    wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 master, unreleased")
    log = lab.log("lb1", since=mark)
    assert "release-VI_1: unexpected line" in log and "starting unreleased" in log, log
