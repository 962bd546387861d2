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
import signal
import subprocess
import threading

import pytest

from halolab import lab_factory, LB as LBS, VIP, Lab, always_until, halo_bin, vrrp_toml, wait_for

# Upper bounds only (an election at 100 ms adverts takes well under a
# second when idle); generous so a loaded 2-core machine does not fail them.
T = 30


def cfg(priority, interval="100ms", extra="", vips=(VIP + "/24",), version=3):
    return vrrp_toml(priority, interval, extra, vips, version)


@pytest.fixture
def lab_of():
    """Build a lab of the given shape; always taken down after the test."""
    yield from lab_factory("vr")


@pytest.fixture
def topo(lab_of):
    return lab_of(2)


def one_master(t, names, expect, vip=VIP, timeout=T):
    """Wait until `expect` is the only holder of the VIP. Routers started a
    few ms apart may briefly elect the wrong one before the preemption the
    test expects; that transient is not a failure."""
    wait_for(lambda: t.holders(names, vip) == [expect], timeout, f"{expect} as the only holder of {vip}")
    return expect


def pair(t, p1=101, p2=100, extra1="", extra2="", **kw):
    t.run_halo("lb1", cfg(p1, extra=extra1, **kw))
    t.run_halo("lb2", cfg(p2, extra=extra2, **kw))


def heard(t, node):
    """Adverts `node`'s halo has received (its router's counter), or -1
    while it does not answer."""
    v = t.vrrp(node)
    return v["adverts_received"] if v else -1


def while_adverts(t, node, n):
    """`until` for always_until: `node` has heard `n` more adverts from now
    on, so a stability window spans n advert intervals however slow the
    machine is (a sleep might span none on a loaded one)."""
    # `node` may have started after the master took the VIP: its halo
    # answers once it runs.
    wait_for(lambda: heard(t, node) >= 0, T, f"{node}'s halo to answer on its control socket")
    start = heard(t, node)
    return lambda: heard(t, node) >= start + n


def backup_of(t, node, master):
    """`node` is BACKUP and knows `master` (it heard its advert): the
    election is over for it. Routers started together may both time out
    within a millisecond of each other and both be master for a moment,
    even after the VIP was seen on the winner alone; a stability window
    starts after that."""
    v = t.vrrp(node)
    return v is not None and v["state"] == "BACKUP" and v["master"] == LBS[master]


def test_higher_priority_wins_and_only_it_holds_the_vip(topo):
    pair(topo)
    one_master(topo, ["lb1", "lb2"], "lb1")
    wait_for(lambda: backup_of(topo, "lb2", "lb1"), T, "lb2 backup of lb1")
    # Stable: no flapping over ten advert intervals (ten adverts lb2 heard).
    always_until(lambda: topo.holders(["lb1", "lb2"], VIP) == ["lb1"], while_adverts(topo, "lb2", 10), T,
                 "lb1 the only holder")
    log = topo.log("lb1")
    assert "-> MASTER" in log, log


def test_kill_9_master_backup_takes_over_and_old_master_preempts_back(topo):
    pair(topo)
    one_master(topo, ["lb1", "lb2"], "lb1")
    # lb2 may have said "no advert" at start-up already (lb1 started late):
    # only what it logs after the kill counts.
    mark = topo.log_mark("lb2")
    topo.kill("lb1")
    wait_for(lambda: VIP in topo.addrs("lb2"), T, "lb2 to take the VIP after kill -9")
    log = topo.log("lb2", since=mark)
    assert "BACKUP -> MASTER: no advert from 192.0.2.11" in log, log
    # lb1 comes back: a crash left its VIP behind; halo clears it at start,
    # then preempts (priority 101 > 100).
    topo.start("lb1")
    wait_for(lambda: topo.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 to preempt back")


def test_nopreempt_keeps_the_current_master(topo):
    pair(topo, extra1="nopreempt = true", extra2="nopreempt = true")
    one_master(topo, ["lb1", "lb2"], "lb1")
    topo.stop("lb1")
    wait_for(lambda: topo.holders(["lb1", "lb2"], VIP) == ["lb2"], T, "lb2 master")
    topo.start("lb1")
    # The window is counted in lb2's adverts that the restarted lb1 heard
    # (it would preempt on the first one), not slept: on a slow machine lb1
    # might not even be up after a fixed sleep.
    def backup_after_ten_adverts():
        v = topo.vrrp("lb1")
        return v is not None and v["state"] == "BACKUP" and v["master"] == LBS["lb2"] \
            and v["adverts_received"] >= 10
    always_until(lambda: topo.holders(["lb1", "lb2"], VIP) == ["lb2"], backup_after_ten_adverts, T,
                 "lb2 the only holder: lb1 must not preempt with nopreempt")
    v = topo.vrrp("lb1")
    assert "nopreempt is set" in v["explanation"], v


def test_clean_stop_hands_over_and_removes_vip(topo):
    pair(topo, interval="1s")
    one_master(topo, ["lb1", "lb2"], "lb1")
    mark = topo.log_mark("lb2")
    topo.stop("lb1")
    assert "halo stopped" in topo.log("lb1"), topo.log("lb1")
    assert VIP not in topo.addrs("lb1"), "VIP removed on clean stop"
    # The takeover reason proves the priority-0 path (skew time) was taken
    # rather than master-down; how fast it is goes in the benchmark.
    wait_for(lambda: VIP in topo.addrs("lb2"), T, "lb2 to take over after priority 0")
    log = topo.log("lb2", since=mark)
    assert "BACKUP -> MASTER: master 192.0.2.11 sent priority 0 (shutdown)" in log, log


def test_link_down_on_master_moves_vip(topo):
    pair(topo)
    one_master(topo, ["lb1", "lb2"], "lb1")
    mark = topo.log_mark("lb1")
    topo.exec("lb1", "ip", "link", "set", "eth0", "down")
    wait_for(lambda: VIP in topo.addrs("lb2"), T, "lb2 to take over when lb1's link is down")
    # lb2 takes over because the link carries no adverts, which does not
    # wait for lb1's halo to notice: its FAULT may come later.
    wait_for(lambda: "-> FAULT: eth0 link down" in topo.log("lb1", since=mark), T, "lb1 to log FAULT")
    wait_for(lambda: VIP not in topo.addrs("lb1"), T, "lb1 in FAULT to remove the VIP")
    topo.exec("lb1", "ip", "link", "set", "eth0", "up")
    wait_for(lambda: topo.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 back as master")


def test_three_nodes_elect_highest_then_next(lab_of):
    t = lab_of(3)
    t.run_halo("lb1", cfg(90))
    t.run_halo("lb2", cfg(110))
    t.run_halo("lb3", cfg(100))
    one_master(t, ["lb1", "lb2", "lb3"], "lb2")
    t.kill("lb2")
    # kill -9 leaves the VIP on lb2 (stale): only lb1 and lb3 are asked.
    # lb1 (90) and lb3 (100) time out within 4 ms of each other at 100 ms
    # adverts, so lb1 may be master for a moment until it hears lb3: wait
    # for lb3 alone, then it must stay so.
    wait_for(lambda: t.holders(["lb1", "lb3"], VIP) == ["lb3"], T, "lb3 (next highest) the only holder")
    wait_for(lambda: backup_of(t, "lb1", "lb3"), T, "lb1 backup of lb3")
    always_until(lambda: t.holders(["lb1", "lb3"], VIP) == ["lb3"], while_adverts(t, "lb1", 10), T,
                 "lb3 the only holder, lb1 backup")


def test_unicast_peers(topo):
    t = topo
    t.run_halo("lb1", cfg(101, extra=f'unicast_peers = ["{LBS["lb2"]}"]'))
    t.run_halo("lb2", cfg(100, extra=f'unicast_peers = ["{LBS["lb1"]}"]'))
    one_master(t, ["lb1", "lb2"], "lb1")
    t.stop("lb1")
    wait_for(lambda: VIP in t.addrs("lb2"), T, "lb2 to take over in unicast mode")


def test_ipv6_vip_with_v3(lab_of):
    t = lab_of(2, ipv6=True)
    vip6 = "2001:db8::100"
    t.run_halo("lb1", cfg(101, vips=(vip6 + "/64",)))
    t.run_halo("lb2", cfg(100, vips=(vip6 + "/64",)))
    one_master(t, ["lb1", "lb2"], "lb1", vip=vip6)
    t.kill("lb1")
    wait_for(lambda: vip6 in t.addrs("lb2"), T, "lb2 to take the IPv6 VIP")


def client_mac_for_vip(t):
    r = t.exec("client", "ip", "neigh", "show", VIP, "dev", "eth0", check=False)
    parts = r.stdout.split()
    return parts[parts.index("lladdr") + 1] if "lladdr" in parts else None


def test_split_brain_heals_to_one_master(topo):
    pair(topo)
    one_master(topo, ["lb1", "lb2"], "lb1")
    topo.exec("client", "ping", "-c", "1", "-W", "10", VIP)
    assert client_mac_for_vip(topo) == topo.mac("lb1")
    # Partition the LBs from each other only (`halo lab cut lbs`: bridge
    # port isolation, links stay up, so neither goes to FAULT). Both become
    # master: split brain, and lb2's gratuitous ARP points the client at lb2.
    topo.cut("lbs")
    wait_for(lambda: topo.holders(["lb1", "lb2"], VIP) == ["lb1", "lb2"], T, "split brain")
    wait_for(lambda: client_mac_for_vip(topo) == topo.mac("lb2"), T, "client to follow lb2's GARP")
    topo.heal("lbs")
    wait_for(lambda: topo.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "split brain to heal")
    # The winner re-announces the VIP when it hears the loser's advert;
    # without that the client keeps the loser's MAC (its idle entry only
    # goes stale, it does not learn a new one without traffic).
    wait_for(lambda: client_mac_for_vip(topo) == topo.mac("lb1"), T, "client to learn lb1's MAC again")


def test_cable_cut_at_switch_is_a_fault(topo):
    pair(topo)
    one_master(topo, ["lb1", "lb2"], "lb1")
    topo.cut("lb1")  # the switch port goes down: carrier lost on lb1
    wait_for(lambda: topo.holders(["lb1", "lb2"], VIP) == ["lb2"], T, "lb2 master, lb1 in FAULT without the VIP")
    topo.heal("lb1")
    wait_for(lambda: topo.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 back as master")


def test_missing_interface_is_a_clear_error(lab_of):
    t = lab_of(1)
    path = t.write("lb1", "bad.toml", cfg(101).replace('"eth0"', '"eth9"'))
    r = t.exec("lb1", halo_bin(), "run", "--config", path, "--socket", t.path("lb1", "bad.sock"), check=False)
    assert r.returncode != 0
    assert "eth9" in r.stderr


def test_other_router_with_different_vip_set_is_named(topo):
    topo.run_halo("lb1", cfg(101))
    topo.run_halo("lb2", cfg(100, vips=("192.0.2.200/24",)))
    # Each drops the other's adverts, so both become master and each warns,
    # in whatever order they get there: wait for each one's own line.
    for node, other in (("lb2", "192.0.2.11"), ("lb1", "192.0.2.12")):
        line = f"{other} uses VRID 51 with a different VIP set"
        try:
            wait_for(lambda: line in topo.log(node), T, f"{node} to warn: {line}")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{topo.log(node)}") from None


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
    wait_for(lambda: VIP in t.addrs("lb1"), T, "unprivileged halo to become master")


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
    # Pings until stopped (at most 3000, 60 s), read as they come: the stop
    # happens once replies are flowing, and the ping ends only after lb2 has
    # answered a good number of them, so the whole hand-over is inside the
    # measured run however slow the machine. (A fixed count with a sleep
    # could end before the hand-over, or begin after it.)
    ping = topo.spawn("ping", "client", ["ping", "-n", "-i", "0.02", "-W", "1", "-c", "3000", VIP],
                      stdout=subprocess.PIPE)
    seqs = []
    lines = []

    def read():
        for line in ping.stdout:
            lines.append(line)
            m = re.search(r"bytes from .* icmp_seq=(\d+) ", line)
            if m:
                seqs.append(int(m.group(1)))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: len(seqs) >= 10, T, "the client's pings to the VIP answered (by lb1)")
        topo.stop("lb1")
        assert "halo stopped" in topo.log("lb1")
        wait_for(lambda: topo.holders(["lb1", "lb2"], VIP) == ["lb2"], T, "lb2 master")
        after = len(seqs)
        wait_for(lambda: len(seqs) >= after + 25, T, "pings answered by lb2")
    finally:
        topo.signal("ping", signal.SIGINT)
        reader.join(timeout=30)
    out = "".join(lines)
    # Lost: every request between the first and the last answered one that
    # got no answer (the one in flight when ping was interrupted is not).
    got = set(seqs)
    lost = [n for n in range(min(got), max(got) + 1) if n not in got]
    assert len(lost) <= 2, f"lost {lost}\n{out}"
    assert "is master now" in topo.log("lb1")


def test_backup_stalled_past_master_down_reads_the_queued_adverts_first(topo):
    # A backup whose thread did not run for longer than the master-down
    # interval (a CPU kept busy by the proxy, a VM's vCPU descheduled; here
    # SIGSTOP) wakes with the live master's adverts queued in its socket
    # and its Master_Down_Timer expired at the same moment. It must read
    # the adverts first and stay backup. It used to fire the timer first
    # whenever tokio's select! happened to poll the timer before the socket
    # (about one stall in seven) and took the VIP from a live master.
    pair(topo)  # 100 ms adverts: master down after 0.36 s
    one_master(topo, ["lb1", "lb2"], "lb1")
    wait_for(lambda: heard(topo, "lb2") > 5, T, "lb2 hearing lb1")
    before = topo.vrrp("lb2")["transitions"]
    pid = int(open(topo.path("lb2", "halo.pid")).read().split()[0])
    for _ in range(25):
        h = heard(topo, "lb2")
        os.kill(pid, signal.SIGSTOP)
        try:
            # Longer than the master-down interval, so several of lb1's
            # adverts queue up meanwhile.
            threading.Event().wait(0.6)
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: heard(topo, "lb2") > h + 3, T, "lb2 reading lb1's adverts after the stall")
    v = topo.vrrp("lb2")
    assert v["state"] == "BACKUP" and v["transitions"] == before, (v, topo.log("lb2"))
    assert topo.holders(["lb1", "lb2"], VIP) == ["lb1"]


def test_whole_host_stall_of_master_and_backup_changes_no_state(topo):
    # Both routers frozen in the same instant for longer than the master
    # down interval: a VM whose vCPUs the hypervisor did not schedule (the
    # 10 ms soak saw 100-700 ms stalls hit separate processes in the same
    # millisecond). The backup wakes with its Master_Down_Timer long
    # overdue and nothing in its socket, because the master did not run
    # either. It used to take over (and hand back on the master's next
    # advert); now a timer handled an advert interval or more late waits a
    # grace (Master_Adver_Interval + Skew_Time) for the master first.
    # The backup is resumed first, the harder order: the master's advert
    # cannot be queued before the backup looks at its timer.
    pair(topo)  # 100 ms adverts: master down after 0.36 s, grace 0.16 s
    one_master(topo, ["lb1", "lb2"], "lb1")
    wait_for(lambda: backup_of(topo, "lb2", "lb1"), T, "lb2 backup of lb1")
    wait_for(lambda: heard(topo, "lb2") > 5, T, "lb2 hearing lb1")
    before = {n: topo.vrrp(n)["transitions"] for n in ("lb1", "lb2")}
    mark = topo.log_mark("lb2")
    pids = {n: int(open(topo.path(n, "halo.pid")).read().split()[0]) for n in ("lb1", "lb2")}
    for _ in range(10):
        h = heard(topo, "lb2")
        stopped = []
        try:
            for n in ("lb1", "lb2"):
                os.kill(pids[n], signal.SIGSTOP)
                stopped.append(n)
            # 0.5 s: at least 0.14 s (more than an advert interval) past
            # lb2's master down timer whenever the last advert came.
            threading.Event().wait(0.5)
        finally:
            for n in ("lb2", "lb1"):
                if n in stopped:
                    os.kill(pids[n], signal.SIGCONT)
        wait_for(lambda: heard(topo, "lb2") > h + 3, T, "lb2 hearing lb1 again after the stall")
    after = {n: topo.vrrp(n)["transitions"] for n in ("lb1", "lb2")}
    assert after == before, (before, after, topo.log("lb2", since=mark))
    assert topo.holders(["lb1", "lb2"], VIP) == ["lb1"]
    # The stalls were seen and said (not a stall too short to matter).
    assert "proves nothing: waiting" in topo.log("lb2", since=mark), topo.log("lb2", since=mark)
    # A real failure still fails over, through the grace if need be.
    topo.kill("lb1")
    wait_for(lambda: VIP in topo.addrs("lb2"), T, "lb2 to take the VIP after kill -9")
    assert "BACKUP -> MASTER: no advert from 192.0.2.11" in topo.log("lb2", since=mark)
