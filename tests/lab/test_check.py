"""`halo lab check 10` (docs/labs/10-active-active.md) against a real lab in
the unsolved state (`halo lab up --lbs 3`: one VIP, on lb1) and in the
solved one (`--lbs 3 --vips 3`: each LB master of its own VIP, the others
its backups). The check reads the running lab itself: the kernel's
addresses, each halo's control socket, requests from the client."""

import os
import subprocess

import pytest

from halolab import LB, Lab, wait_for

T = 60
VIPS = ["192.0.2.100", "192.0.2.101", "192.0.2.102"]
NODES = ["web1", "lb1", "lb2", "lb3"]


@pytest.fixture
def root():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")


def check(lab):
    return lab.lab("check", "10", check=False)


def settled(lab, n):
    """Every LB's halo knows a master for each of its instances, and that
    master holds the VIP (the election is over)."""
    for node in ["lb1", "lb2", "lb3"]:
        s = lab.status(node)
        if not s or len(s["vrrp"]) != n:
            return False
        for v in s["vrrp"]:
            if v["state"] == "BACKUP" and v["master"] not in LB.values():
                return False
            if v["state"] not in ("BACKUP", "MASTER"):
                return False
    return all(len(lab.holders(["lb1", "lb2", "lb3"], vip)) == 1 for vip in VIPS[:n])


def test_check_9_says_what_is_missing_in_a_one_vip_lab(root):
    with Lab("ck", lbs=3, backends=1) as lab:
        for node in NODES:
            lab.start(node)
        wait_for(lambda: settled(lab, 1), T, "one master for VIP 1, two backups")
        wait_for(lambda: lab.exec("client", "curl", "-sf", "-m", "2", f"http://{VIPS[0]}/",
                                  check=False).returncode == 0, T, "VIP 1 to answer")
        r = check(lab)
        assert r.returncode == 1, r.stdout + r.stderr
        out = r.stdout
        assert "ok    192.0.2.100 is held by lb1 only" in out, out
        assert "FAIL  192.0.2.101 is held by nobody" in out, out
        assert "FAIL  lb2 is master of no VIP" in out, out
        assert "FAIL  lb1 is not BACKUP of 192.0.2.101, 192.0.2.102" in out, out
        assert "ok    http://192.0.2.100/ answers (from web1)" in out, out
        assert "FAIL  http://192.0.2.101/ does not answer" in out, out
        assert "not yet:" in out, out


def test_check_9_passes_on_the_active_active_lab(root):
    with Lab("ck", lbs=3, backends=1, vips=3) as lab:
        for node in NODES:
            lab.start(node)
        wait_for(lambda: settled(lab, 3), T, "a master and two backups for each VIP")
        # The proxies' health checks need a moment after the election: the
        # check is run until it passes, and must then say why it passed.
        wait_for(lambda: check(lab).returncode == 0, T, "halo lab check 10 to pass")
        out = check(lab).stdout
        for i, vip in enumerate(VIPS, 1):
            assert f"ok    {vip} is held by lb{i} only" in out, out
            assert f"ok    lb{i} is master of {vip}" in out, out
            assert f"ok    lb{i} is BACKUP of every VIP it does not hold" in out, out
        assert "goal reached: all 12 points" in out, out
        assert "FAIL" not in out
        # `halo lab status` lists the other VIPs and their holders too.
        st = lab.lab("status").stdout
        assert "VI_2: 192.0.2.101 held by lb2" in st and "VI_3: 192.0.2.102 held by lb3" in st, st


def test_check_of_an_exercise_without_one_is_an_error(root):
    with Lab("ck", lbs=1, backends=0) as lab:
        r = lab.lab("check", "12", check=False)
        assert r.returncode != 0
        assert "exercise 12 has no check yet; checks exist for: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10" in r.stderr, r.stderr
