"""Named labs: what makes `halo lab` the test suite's harness.

Several labs side by side (`--name`), each taken down without touching the
others; `--backends 0` (VRRP only), `--ipv6`, `--no-start`; `exec` handing
over its exit status. The other tests of the suite build their topologies
through tests/halolab.py, which relies on exactly these.
"""

import os
import subprocess
import tempfile

import pytest

from halolab import VIP, Lab, alive, halo_bin, wait_for

# Upper bounds only; generous for a loaded 2-core machine.
T = 60


def namespaces_of(name):
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return sorted(l.split()[0] for l in out.splitlines() if l.split() and l.split()[0].startswith(f"halo-{name}-"))


def root_links():
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())


@pytest.fixture(autouse=True)
def root():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")


def test_two_labs_side_by_side_and_down_removes_only_its_own():
    before = root_links()
    with Lab("one", lbs=2, backends=0) as a, Lab("two", lbs=1, backends=1, ipv6=True) as b:
        assert namespaces_of(a.name) == [a.ns(n) for n in ("client", "lb1", "lb2", "switch")]
        assert namespaces_of(b.name) == [b.ns(n) for n in ("client", "lb1", "switch", "web1")]
        # The same addresses in both labs: separate switches, separate worlds.
        assert "192.0.2.11" in a.addrs("lb1") and "192.0.2.11" in b.addrs("lb1")
        assert "2001:db8::11" in b.addrs("lb1") and "2001:db8::11" not in a.addrs("lb1")
        b.start("web1")
        r = b.exec("client", "curl", "-s", "-m", str(T), "http://192.0.2.21/health", timeout=T + 10)
        assert r.stdout == "ok\n"
        # Nothing of lab two is reachable from lab one.
        r = a.exec("client", "ping", "-c", "1", "-W", "1", "192.0.2.21", check=False)
        assert r.returncode != 0
        pids = subprocess.run(["ip", "netns", "pids", b.ns("web1")], capture_output=True, text=True).stdout.split()
        assert pids, "nginx runs in lab two"
        # `list` shows both labs with their nodes.
        listed = subprocess.run([halo_bin(), "lab", "list"], capture_output=True, text=True).stdout
        assert f"{a.name} " in listed and f"{b.name} " in listed, listed
        assert any(l.split()[:1] == [b.name] and l.split()[2:] == ["lb1", "web1", "client"]
                   for l in listed.splitlines()), listed
        a.lab("down")
        assert namespaces_of(a.name) == []
        assert f"{a.name} " not in subprocess.run([halo_bin(), "lab", "list"], capture_output=True, text=True).stdout
        assert len(namespaces_of(b.name)) == 4
        assert b.exec("client", "curl", "-s", "-m", str(T), "http://192.0.2.21/health",
                      timeout=T + 10).stdout == "ok\n"
    assert namespaces_of(b.name) == []
    assert [p for p in pids if alive(p)] == []
    assert root_links() == before


def test_a_vrrp_only_lab_comes_up_with_one_master():
    # The full `up` (not --no-start) of a named lab without backends: the
    # generated halo.toml is VRRP only and up waits for one master.
    with tempfile.TemporaryDirectory(prefix="halo-lab-vrrp-") as d:
        name = f"v{os.getpid() % 100000}"
        base = [halo_bin(), "lab"]
        flags = ["--name", name, "--dir", d]
        try:
            r = subprocess.run(base + ["up", "--lbs", "2", "--backends", "0", "--timeout", str(2 * T)] + flags,
                               capture_output=True, text=True, timeout=3 * T)
            assert r.returncode == 0, r.stdout + r.stderr
            assert "MASTER" in r.stdout and f"--name {name}" in r.stdout, r.stdout
            with open(os.path.join(d, "lb1", "halo.toml")) as f:
                assert "[proxy" not in f.read()

            def holders():
                return [lb for lb in ("lb1", "lb2") if f" {VIP}/" in subprocess.run(
                    ["ip", "-n", f"halo-{name}-{lb}", "-o", "addr"], capture_output=True, text=True).stdout]
            # One master when `up` returned; lb2 for a moment if lb1 started
            # late, until lb1 (the higher priority) preempts.
            wait_for(lambda: holders() == ["lb1"], T, "lb1 the only holder")
            r = subprocess.run(base + ["status"] + flags, capture_output=True, text=True, timeout=30)
            assert "MASTER" in r.stdout, r.stdout
        finally:
            subprocess.run(base + ["down"] + flags, capture_output=True, timeout=60)
        assert namespaces_of(name) == []


def test_exec_hands_over_its_exit_status_and_bad_names_are_refused():
    with Lab("ex", lbs=1, backends=0) as lab:
        r = lab.exec("lb1", "sh", "-c", "echo $$; exit 7", check=False)
        assert r.returncode == 7
        r = lab.exec("switch", "ip", "-o", "link", "show", "br0")
        assert "br0" in r.stdout
        # A command started through exec is the process itself: its pid is
        # the one Popen knows, so tests signal it directly.
        p = lab.spawn("sleeper", "lb1", ["sleep", "30"])
        wait_for(lambda: str(p.pid) in subprocess.run(["ip", "netns", "pids", lab.ns("lb1")],
                                                       capture_output=True, text=True).stdout,
                 T, "the sleeper's own pid inside lb1")
        assert lab.signal("sleeper") == -15
    r = subprocess.run([halo_bin(), "lab", "status", "--name", "Bad-Name"], capture_output=True, text=True)
    assert r.returncode != 0 and "lab name" in r.stderr, r.stderr


def test_nodes_keep_the_kernels_defaults():
    # Duplicate address detection stays on, as on a real host: the kernel's
    # values in a new namespace are `all` 0 and `default` (so every
    # interface made in it) 1; the larger of `all` and the interface's own
    # counts. IPv6 addresses are tentative for a second or two after they
    # are added, and halo copes with that (tests/vrrp/test_real_network.py).
    with Lab("dad", lbs=1, backends=0, ipv6=True) as lab:
        for node in ("lb1", "client"):
            for k, want in (("all", "0"), ("default", "1"), ("eth0", "1")):
                r = lab.exec(node, "sysctl", "-n", f"net.ipv6.conf.{k}.accept_dad")
                assert r.stdout.strip() == want, (node, k, r.stdout)


def test_an_ipv6_lab_is_up_once_duplicate_address_detection_is_done():
    # DAD keeps new addresses tentative for a second or two; `up` returns
    # when none is, as a host's network-online does, so the first ping
    # from the client works (it failed for 10 s when `up` did not wait).
    with Lab("dad", lbs=1, backends=0, ipv6=True) as lab:
        for node in ("lb1", "client"):
            out = lab.exec(node, "ip", "-6", "-o", "addr", "show", "dev", "eth0").stdout
            assert "tentative" not in out and "dadfailed" not in out, (node, out)
        lab.exec("client", "ping", "-6", "-c", "1", "-W", "10", "2001:db8::11")
