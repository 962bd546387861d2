"""`halo lab check 1` to `9` (docs/labs/01..09) against real labs, each in
the unsolved and in the solved state. One lab (2 LBs, 3 backends, the
generated configs, as a student gets them) goes through exercises 1, 3, 5,
7, 6, 2 and 4 in turn, each step doing what the exercise says (stop a
backend, partition the LBs, cut multicast and add unicast peers, ...);
exercises 8 (`--peer keepalived`) and 9 (`--l4 dr`) get a lab of their own.
A check that must pass is polled until it does (elections and health
checks take seconds, more on a loaded machine); one that must fail is run
once the lab is in the state that fails it."""

import os
import re

import pytest

from halolab import LB, VIP, Lab, wait_for

T = 90
NODES = ["web1", "web2", "web3", "lb1", "lb2"]


@pytest.fixture
def root():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")


def check(lab, n):
    return lab.lab("check", str(n), check=False)


def passes(lab, n):
    """Poll `halo lab check N` until it exits 0; return its output."""
    last = {}

    def ok():
        last["r"] = check(lab, n)
        return last["r"].returncode == 0

    try:
        wait_for(ok, T, f"halo lab check {n} to pass", step=0.5)
    except AssertionError:
        r = last.get("r")
        raise AssertionError(f"check {n} never passed; last output:\n{r.stdout if r else ''}{r.stderr if r else ''}")
    out = last["r"].stdout
    assert "goal reached" in out and "FAIL" not in out, out
    return out


def fails(lab, n, *reasons):
    """`halo lab check N` exits 1 and names each reason on a FAIL line."""
    r = check(lab, n)
    assert r.returncode == 1, r.stdout + r.stderr
    fail_lines = [ln for ln in r.stdout.splitlines() if ln.strip().startswith("FAIL")]
    for why in reasons:
        assert any(why in ln for ln in fail_lines), f"no FAIL with {why!r} in:\n{r.stdout}"
    assert "not yet:" in r.stdout, r.stdout
    return r.stdout


def edit(lab, node, fn):
    path = lab.path(node, "halo.toml")
    with open(path) as f:
        text = f.read()
    new = fn(text)
    assert new != text, f"{node}/halo.toml unchanged"
    with open(path, "w") as f:
        f.write(new)


def add_to_vrrp(line):
    # The generated [vrrp.VI_1] ends with a "# Try: nopreempt = true, ..." line.
    return lambda t: t.replace("# Try: nopreempt", f"{line}\n# Try: nopreempt", 1)


def settled(lab, master="lb1"):
    """One master holds the VIP, the other LB is its backup, and both see
    every backend UP."""
    lbs = ["lb1", "lb2"]
    if lab.holders(lbs) != [master]:
        return False
    for node in lbs:
        s = lab.status(node)
        if not s or not s["vrrp"] or s["vrrp"][0]["state"] not in ("MASTER", "BACKUP"):
            return False
        if not all(srv["healthy"] for srv in s["proxy"][0]["servers"]):
            return False
    return True


def test_checks_1_to_7_on_one_lab(root):
    with Lab("cb", lbs=2, backends=3) as lab:
        for node in NODES:
            lab.start(node)
        wait_for(lambda: settled(lab), T, "lb1 master, lb2 backup, every backend UP")

        # A fresh lab: exercise 1's goal, none of the others'.
        out = passes(lab, 1)
        assert f"ok    {VIP} is held by lb1 only" in out, out
        assert "ok    every backend answered: web1 3, web2 3, web3 3" in out, out
        fails(lab, 2, "lb1 is still the master: break it")
        fails(lab, 3, "every backend is up: stop one")
        fails(lab, 4, "lb1's halo.toml has no `nopreempt = true`", "lb1 is MASTER")
        fails(lab, 5, "no backup has been master since it started")
        fails(lab, 6, "lb1's halo.toml: advert_interval = 1000 ms", "lb2's halo.toml: advert_interval = 1000 ms")
        fails(lab, 7, "the network still carries multicast to lb1 (up), lb2 (up)")

        # 3: a backend fails; 1 then fails for it.
        lab.stop("web2")
        out = passes(lab, 3)
        assert "ok    web2 down (its /health does not answer), web1 + web3 up" in out, out
        assert "ok    lb1 sees each backend as it is" in out and "ok    lb2 sees each backend as it is" in out, out
        fails(lab, 1, "web2 never answered")
        lab.start("web2")
        passes(lab, 1)
        fails(lab, 3, "every backend is up")

        # 5: split brain while the LBs are partitioned, healed after.
        lab.cut("lbs")
        wait_for(lambda: lab.holders(["lb1", "lb2"]) == ["lb1", "lb2"], T, "both LBs to hold the VIP")
        fails(lab, 5, "not healed: lb1 (isolated), lb2 (isolated)", f"{VIP} is held by lb1 + lb2 at once")
        lab.heal("lbs")
        out = passes(lab, 5)
        assert "ok    lb2 was MASTER during the split and stepped down" in out, out
        assert "ok    the client sends 192.0.2.100's traffic to lb1" in out, out

        # 7: multicast cut: split brain until both LBs list each other.
        lab.cut("multicast")
        wait_for(lambda: lab.holders(["lb1", "lb2"]) == ["lb1", "lb2"], T, "both LBs to hold the VIP")
        fails(lab, 7, "lb1's unicast_peers lacks 192.0.2.12", "lb2's unicast_peers lacks 192.0.2.11",
              f"{VIP} is held by lb1 + lb2 at once")
        edit(lab, "lb1", add_to_vrrp(f'unicast_peers = ["{LB["lb2"]}"]'))
        edit(lab, "lb2", add_to_vrrp(f'unicast_peers = ["{LB["lb1"]}"]'))
        lab.reload("lb1")
        lab.reload("lb2")
        out = passes(lab, 7)
        assert "ok    lb2 is BACKUP to lb1" in out, out
        lab.heal("multicast")
        fails(lab, 7, "the network still carries multicast")

        # 6's "Try": adverts every 100 ms in both LBs.
        for node in ("lb1", "lb2"):
            edit(lab, node, lambda t: t.replace('advert_interval = "1s"', 'advert_interval = "100ms"', 1))
            lab.reload(node)
        out = passes(lab, 6)
        assert "ok    lb2 hears lb1 every 100 ms" in out, out

        # 2: the master crashes; the backup serves and the client follows.
        wait_for(lambda: settled(lab), T, "lb1 master again")
        lab.kill("lb1")
        out = passes(lab, 2)
        assert "ok    lb1, the first master, is out: its halo is not running" in out, out
        assert "ok    lb2 took over: MASTER, holds 192.0.2.100" in out, out
        fails(lab, 4, "lb1's halo is not running")

        # 4: nopreempt, and lb1 back as backup.
        edit(lab, "lb1", add_to_vrrp("nopreempt = true"))
        lab.start("lb1")
        out = passes(lab, 4)
        assert "ok    lb1 came back as BACKUP despite its higher priority" in out, out
        assert "ok    lb2 keeps the VIP as MASTER" in out, out


def test_check_8_with_a_keepalived_peer(root):
    with Lab("ck8", lbs=2, backends=3, peer="keepalived") as lab:
        fails(lab, 8, "lb1's halo does not answer")
        for node in NODES:
            lab.start(node)
        out = passes(lab, 8)
        assert "ok    lb2 runs keepalived for VRRP" in out, out
        assert "ok    lb1's halo is MASTER; keepalived on lb2 backs it up" in out, out
        # "What keepalived does not know": lb1 stopped, keepalived on lb2
        # takes the VIP, lb2's backends unreachable from lb2: keepalived
        # keeps the VIP and the client gets 503s.
        lab.stop("lb1")
        for w in (21, 22, 23):
            lab.exec("lb2", "ip", "route", "add", "prohibit", f"192.0.2.{w}/32")
        wait_for(lambda: lab.holders(["lb1", "lb2"]) == ["lb2"], T, "keepalived on lb2 to take the VIP")
        wait_for(lambda: "status 503" in check(lab, 8).stdout, T, "lb2's proxy to answer 503")
        fails(lab, 8, "lb1's halo does not answer", "failed (first: status 503)")
        # halo back on lb1 preempts keepalived and serves.
        lab.start("lb1")
        passes(lab, 8)


def test_check_8_needs_a_keepalived_lab(root):
    with Lab("ck8", lbs=2, backends=1) as lab:
        fails(lab, 8, "no LB runs keepalived")


def test_check_9_with_direct_routing_and_its_arp_trap(root):
    with Lab("ck9", lbs=2, backends=3, l4="dr") as lab:
        for node in NODES:
            lab.start(node)
        out = passes(lab, 9)
        assert "ok    lb1 balances in the kernel: [l4] dr, UP" in out, out
        for w in (1, 2, 3):
            assert f"ok    web{w} holds {VIP} on lo" in out, out
        # The exercise's "Try": web1 answers ARP for the VIP.
        lab.exec("web1", "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=0", "net.ipv4.conf.eth0.arp_ignore=0")
        out = fails(lab, 9, "web1 may answer ARP for 192.0.2.100 (arp_ignore 0")
        assert re.search(r"ok    web2 never answers ARP", out), out


def test_check_9_fails_on_a_lab_without_l4(root):
    with Lab("ck9", lbs=2, backends=1) as lab:
        for node in ["web1", "lb1", "lb2"]:
            lab.start(node)
        wait_for(lambda: lab.holders(["lb1", "lb2"]) == ["lb1"], T, "lb1 master")
        fails(lab, 9, 'lb1 runs no [l4] service with forward = "dr"', "web1 does not hold 192.0.2.100 on lo")
