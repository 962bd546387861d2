"""`halo lab`: a whole HA cluster in network namespaces, driven only through
the `halo lab` command line, as a student would.

Each test brings a lab up in its own directory and always takes it down
(fixture), then checks that nothing is left: no lab namespace, no process
that was inside one. Who holds the VIP is read from the kernel
(`ip -n halo-lbN -o addr`), not from halo. No timing is asserted; the waits
are generous upper bounds.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from halolab import alive, always_until, halo_bin, wait_for

VIP = "192.0.2.100"
# Upper bounds only: the lab runs 1 s adverts (an election takes 3.6 s and
# more) and health checks at 1 s; generous for a loaded 2-core machine.
T = 60
LAB_NS = re.compile(r"^halo-(sw|client|lb[1-9]|web[1-9])$")


def lab_namespaces():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip() and LAB_NS.match(line.split()[0])]


def pids_in(namespaces):
    pids = []
    for ns in namespaces:
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
        pids += [int(p) for p in out.split()]
    return pids


def holds_vip(lb):
    out = subprocess.run(["ip", "-n", f"halo-{lb}", "-o", "-4", "addr", "show", "dev", "eth0"],
                         capture_output=True, text=True).stdout
    return f" {VIP}/" in out


def holders(lbs=("lb1", "lb2")):
    return [lb for lb in lbs if holds_vip(lb)]


def mac(node):
    out = subprocess.run(["ip", "-n", f"halo-{node}", "-o", "link", "show", "dev", "eth0"],
                         capture_output=True, text=True).stdout.split()
    return out[out.index("link/ether") + 1] if "link/ether" in out else None


def client_mac_for_vip():
    """The MAC the client's neighbour entry has for the VIP, or None."""
    out = subprocess.run(["ip", "-n", "halo-client", "neigh", "show", VIP, "dev", "eth0"],
                         capture_output=True, text=True).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else None


def serving(lb):
    """`lb` is the only VIP holder and the client sends to it: its
    neighbour entry for the VIP (if it has one; without, it asks and only
    `lb` answers) has `lb`'s MAC. The VIP is added before the gratuitous
    ARP goes out, so the holder alone does not mean that the client
    follows yet: a request in between goes to the old master."""
    if holders() != [lb]:
        return False
    seen = client_mac_for_vip()
    return seen is None or seen == mac(lb)


def adverts_sent(lab, lb):
    r = subprocess.run([halo_bin(), "status", "--json", "--socket", os.path.join(lab.dir, lb, "halo.sock")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["vrrp"][0]["adverts_sent"]


def root_links():
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())


class Lab:
    def __init__(self, d):
        self.dir = d

    def run(self, *args, check=True, timeout=120):
        cmd = [halo_bin(), "lab", *args]
        if args[0] == "up":
            # Converging may take long on a loaded machine: the default 30 s
            # is for students.
            cmd += ["--timeout", str(T * 2)]
            timeout = max(timeout, T * 3)
        # `exec` takes the command after `--`; `--dir` must come before it.
        if args[0] != "exec":
            cmd += ["--dir", self.dir]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def log(self, node, name="halo"):
        try:
            with open(os.path.join(self.dir, node, f"{name}.log")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def curl(self, n):
        """Counts per server from `halo lab curl N`'s last line."""
        out = self.run("curl", str(n), check=False).stdout
        last = out.strip().splitlines()[-1]
        counts = dict(re.findall(r"(\S+) (\d+)", last.split(":", 2)[-1]))
        return {k: int(v) for k, v in counts.items()}, out


@pytest.fixture
def lab():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    existing = lab_namespaces()
    assert not existing, f"a lab is already up on this machine ({existing}); not touching it"
    with tempfile.TemporaryDirectory(prefix="halo-lab-") as d:
        l = Lab(d)
        try:
            yield l
        finally:
            try:
                for node in ("lb1", "lb2"):
                    if l.log(node):
                        print(f"--- {node}/halo.log\n{l.log(node)[-3000:]}")
            finally:
                # Twice if need be: a lab left up would fail every later test.
                for _ in range(2):
                    try:
                        r = subprocess.run([halo_bin(), "lab", "down", "--dir", d], capture_output=True,
                                           timeout=120)
                    except subprocess.TimeoutExpired:
                        continue
                    if r.returncode == 0:
                        break
                assert lab_namespaces() == [], f"halo lab down left {lab_namespaces()}"


def wait_counts(lab, n, want, timeout, what):
    """Repeat `halo lab curl N` until its counts are `want`; on timeout, fail
    with the last output so the reason is in the report."""
    last = {}

    def ok():
        last["counts"], last["out"] = lab.curl(n)
        return last["counts"] == want

    try:
        wait_for(ok, timeout, what, step=0.5)
    except AssertionError as e:
        raise AssertionError(f"{e}; last `halo lab curl {n}`:\n{last.get('out')}\n"
                             f"status:\n{lab.run('status', check=False).stdout}") from None


def assert_down_leaves_nothing(lab):
    pids = pids_in(lab_namespaces())
    assert pids, "a lab that is up has processes in its namespaces"
    lab.run("down")
    assert lab_namespaces() == []
    left = [p for p in pids if alive(p)]
    assert left == [], f"processes left after halo lab down: {left}"
    # Twice is fine, and says so.
    r = lab.run("down")
    assert "no lab was up" in r.stdout


def test_up_round_robin_failover_and_down_leaves_nothing(lab):
    before = root_links()
    r = lab.run("up", "--lbs", "2", "--backends", "3")
    assert "MASTER" in r.stdout and "halo lab curl" in r.stdout, r.stdout
    # `up` waits for one master; lb2 can be that one for a moment if lb1
    # started late, until lb1 preempts.
    wait_for(lambda: serving("lb1"), T, "lb1 the only master, the client sending to it")
    # The whole lab lives in namespaces: the root namespace gained no link.
    assert root_links() == before

    counts, out = lab.curl(9)
    assert counts == {"web1": 3, "web2": 3, "web3": 3, "failed": 0}, out

    status = lab.run("status").stdout
    assert re.search(r"lb1 .* MASTER", status), status
    assert re.search(r"web3 .* 200 UP", status), status

    lab.run("kill", "lb1")
    # SIGKILL leaves the VIP on lb1's eth0 (nothing is left to remove it);
    # lb2 takes over and its gratuitous ARP moves the client to it.
    # (The dead lb1 keeps its VIP: only lb2 is asked.)
    wait_for(lambda: holds_vip("lb2"), T, "lb2 to take the VIP after kill lb1")
    wait_for(lambda: client_mac_for_vip() == mac("lb2"), T, "the client to follow lb2's gratuitous ARP")
    counts, out = lab.curl(6)
    assert counts.get("failed") == 0 and len(counts) == 4, out

    # The node comes back and, with the higher priority, preempts.
    lab.run("start", "lb1")
    wait_for(lambda: holders() == ["lb1"], T, "lb1 to take the VIP back")

    assert_down_leaves_nothing(lab)


def test_backend_stopped_is_taken_out_then_back(lab):
    lab.run("up", "--lbs", "2", "--backends", "3")
    lab.run("stop", "web2")
    # fall = 3 checks at 1 s: within a few seconds no request goes to web2.
    wait_counts(lab, 6, {"web1": 3, "web3": 3, "failed": 0}, T, "web2 out of the rotation")
    lab.run("start", "web2")
    wait_counts(lab, 6, {"web1": 2, "web2": 2, "web3": 2, "failed": 0}, T,
                "web2 back in the rotation")


def test_cut_lbs_is_split_brain_and_heal_ends_it(lab):
    lab.run("up", "--lbs", "2", "--backends", "2")
    lab.run("cut", "lbs")
    # Neither LB hears the other: both become master.
    wait_for(lambda: holders() == ["lb1", "lb2"], T, "both LBs to hold the VIP (split brain)")
    assert "SPLIT BRAIN" in lab.run("status").stdout
    lab.run("heal", "lbs")
    wait_for(lambda: holders() == ["lb1"], T, "lb2 to step down after healing")


def test_cut_master_cable_moves_the_vip(lab):
    lab.run("up", "--lbs", "2", "--backends", "2")
    lab.run("cut", "lb1")
    wait_for(lambda: serving("lb2"), T, "lb2 to take the VIP when lb1's cable is cut, the client to follow")
    counts, out = lab.curl(4)
    assert counts.get("failed") == 0, out
    lab.run("heal", "lb1")
    wait_for(lambda: holders() == ["lb1"], T, "lb1 back as the only master")


def test_keepalived_peer_comes_up_with_one_master_and_takes_over(lab):
    r = lab.run("up", "--lbs", "2", "--backends", "2", "--peer", "keepalived")
    assert "keepalived" in r.stdout, r.stdout
    wait_for(lambda: holders() == ["lb1"], T, "lb1 the only master")
    # keepalived may time out about when lb1 does and be master a moment
    # after the VIP was seen on lb1 alone; it has heard lb1 once lb1 has
    # sent two more adverts. Then it stays converged: two implementations
    # do not flap, over three of lb1's adverts (counted, not slept).
    first = adverts_sent(lab, "lb1")
    wait_for(lambda: adverts_sent(lab, "lb1") >= first + 2, T, "two more adverts from lb1")
    wait_for(lambda: holders() == ["lb1"], T, "lb1 the only master")
    start = adverts_sent(lab, "lb1")
    always_until(lambda: holders() == ["lb1"], lambda: adverts_sent(lab, "lb1") >= start + 3, T,
                 "lb1 the only master")
    # Kill halo on lb1: keepalived on lb2 takes the VIP, halo's proxy there serves.
    lab.run("kill", "lb1")
    wait_for(lambda: holds_vip("lb2"), T, "keepalived on lb2 to take the VIP")
    wait_counts(lab, 4, {"web1": 2, "web2": 2, "failed": 0}, T,
                "pages through lb2 (keepalived VIP, halo proxy)")
    assert_down_leaves_nothing(lab)


def test_exec_runs_inside_a_node_and_errors_are_clear(lab):
    lab.run("up", "--lbs", "1", "--backends", "1")
    r = lab.run("exec", "web1", "--", "ip", "-o", "-4", "addr", "show", "dev", "eth0")
    assert "192.0.2.21/24" in r.stdout
    r = lab.run("kill", "db1", check=False)
    assert r.returncode != 0 and "not a lab node" in r.stderr, r.stderr
    r = lab.run("up", check=False)
    assert r.returncode != 0 and "already up" in r.stderr, r.stderr


def test_reload_applies_an_edited_priority_live(lab):
    lab.run("up", "--lbs", "2", "--backends", "1")
    wait_for(lambda: holders() == ["lb1"], T, "lb1 the only master")
    conf = os.path.join(lab.dir, "lb1", "halo.toml")
    with open(conf) as f:
        text = f.read()
    pid_before = open(os.path.join(lab.dir, "lb1", "halo.pid")).read().strip()
    # A broken edit is refused and lb1 keeps running what it had.
    with open(conf, "w") as f:
        f.write(text.replace("priority = 110", "priority = 300"))
    r = lab.run("reload", "lb1", check=False)
    assert r.returncode != 0 and "priority" in r.stderr, r.stderr
    assert holders() == ["lb1"]
    # Below lb2's 100: lb2 preempts, without lb1's halo restarting.
    with open(conf, "w") as f:
        f.write(text.replace("priority = 110", "priority = 90"))
    lab.run("reload", "lb1")
    wait_for(lambda: holders() == ["lb2"], T, "lb2 to preempt after lb1's priority drops to 90")
    assert pid_before in lab.run("status").stdout


def test_without_root_it_says_so_and_touches_nothing(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("drops from root to nobody with setpriv")
    d = tmp_path / "lab"
    for cmd in (["up"], ["down"], ["status"]):
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            halo_bin(), "lab", *cmd, "--dir", str(d)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1, (cmd, r.stdout, r.stderr)
        assert "needs root" in r.stderr and "panicked" not in r.stderr, r.stderr
    assert not d.exists()


def test_down_needs_nothing_recorded(lab):
    # As after a crash that lost the lab directory: down finds the lab
    # from its namespaces alone.
    lab.run("up", "--lbs", "1", "--backends", "1")
    pids = pids_in(lab_namespaces())
    shutil.rmtree(lab.dir)
    r = subprocess.run([halo_bin(), "lab", "down", "--dir", lab.dir + "-never-existed"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert lab_namespaces() == []
    assert [p for p in pids if alive(p)] == []
