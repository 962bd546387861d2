"""Seeds 000 and 002 as their users would move: the seed's keepalived.conf
imported with `halo import` and run on lb1, the seed's other node still
running keepalived (Debian's 2.2.7) on lb2, in a `halo lab`.

The fixtures are tests/import/fixtures (copied verbatim from the seeds).
What cannot run in a lab as written is changed in the text, the same way
for both nodes: the interface (vlan.99 -> the lab's eth0), seed 002's
private 172.16.0.125 -> 192.0.2.100 (the lab's documentation range), seed
000's script user `node` -> root and its notify script -> a script that
records the state. Seed 000's Ansible placeholders are filled with the
lab's addresses (--set for halo, in the text for keepalived). No timing is
asserted: the waits are generous upper bounds.
"""

import os
import shutil
import subprocess

import pytest

from halolab import LB, VIP, Lab, always_until, halo_bin, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "import", "fixtures")
T = 60
HALO, KA = "lb1", "lb2"


@pytest.fixture(autouse=True)
def needs_root_and_keepalived():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    ka = shutil.which("keepalived") or "/usr/sbin/keepalived"
    assert os.path.exists(ka), "keepalived is installed by tests/lib/install-deps.sh"


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return f.read()


def halo_import(lab, text, *args):
    path = lab.write(HALO, "seed.keepalived.conf", text)
    r = subprocess.run([halo_bin(), "import", "--keepalived", path, *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def only_keepalived_on(lab, node, text):
    try:
        os.remove(lab.path(node, "halo.toml"))
    except FileNotFoundError:
        pass
    lab.write(node, "keepalived.conf", text)


def events(path):
    try:
        with open(path) as f:
            return [e for e in f.read().split("\n") if e]
    except FileNotFoundError:
        return []


def dump(lab):
    print("--- halo log ---\n" + lab.log(HALO))
    print("--- keepalived log ---\n" + lab.log(KA, "keepalived"))


def test_seed_000_imported_runs_against_its_keepalived_peer():
    with Lab("sza", lbs=2, backends=0) as lab:
        ev = os.path.join(lab.dir, "events")

        def node_text(name, node):
            script = lab.write(node, "master.sh", f'#!/bin/sh\necho "{node} MASTER" >> {ev}\n', mode=0o755)
            return (fixture(name).replace("vlan.99", "eth0").replace("script_user node", "script_user root")
                    .replace("/etc/keepalived/master.sh", script))

        toml = halo_import(lab, node_text("000-pangrazzi-lb1.keepalived.conf", HALO),
                           "--set", f"lb1_ip_address={LB[HALO]}", "--set", f"lb2_ip_address={LB[KA]}")
        assert "virtual_ips = []" in toml, toml
        lab.write(HALO, "halo.toml", toml)
        ka = (node_text("000-pangrazzi-lb2.keepalived.conf", KA)
              .replace("{{ lb1_ip_address }}", LB[HALO]).replace("{{ lb2_ip_address }}", LB[KA]))
        only_keepalived_on(lab, KA, ka)
        before = {n: sorted(lab.addrs(n)) for n in (HALO, KA)}
        lab.start(KA)
        lab.start(HALO)
        try:
            # No haproxy runs here: both checks fail. halo: 103 - 2 = 101,
            # keepalived: 100 (its +2 only while the check passes).
            wait_for(lambda: "lb1 MASTER" in events(ev), T, "halo's notify_master")
            wait_for(lambda: (lab.vrrp(HALO) or {}).get("state") == "MASTER", T, "halo MASTER")
            # Both may time out together at start (keepalived, started first,
            # can be master for a moment): let two adverts settle it, then
            # halo stays master and keepalived backup over five more.
            sent = lab.vrrp(HALO)["adverts_sent"]
            wait_for(lambda: lab.vrrp(HALO)["adverts_sent"] >= sent + 2, T, "2 more adverts")
            ka_masters = events(ev).count("lb2 MASTER")
            sent = lab.vrrp(HALO)["adverts_sent"]
            always_until(lambda: lab.vrrp(HALO)["state"] == "MASTER" and events(ev).count("lb2 MASTER") == ka_masters,
                         lambda: lab.vrrp(HALO)["adverts_sent"] >= sent + 5, T,
                         "halo master, keepalived backup")
            assert {n: sorted(lab.addrs(n)) for n in (HALO, KA)} == before
            lab.stop(HALO)
            wait_for(lambda: events(ev).count("lb2 MASTER") > ka_masters, T, "keepalived's notify_master")
        except (AssertionError, RuntimeError):
            dump(lab)
            raise


def test_seed_002_imported_runs_against_its_keepalived_peer():
    with Lab("szb", lbs=2, backends=0) as lab:
        text = fixture("002-techjockey-lb01-relined.keepalived.conf").replace("172.16.0.125", VIP)
        toml = halo_import(lab, text)
        assert "[vrrp_sync_group.VG1]" in toml, toml
        lab.write(HALO, "halo.toml", toml)
        # LoadBalancer02, as the seed says: "lvs_id LoadBalancer02 ...
        # state SLAVE priority 100".
        lb2 = (text.replace("LoadBalancer01", "LoadBalancer02").replace("state MASTER", "state BACKUP")
               .replace("priority 101", "priority 100"))
        only_keepalived_on(lab, KA, lb2)
        lab.start(KA)
        lab.start(HALO)
        try:
            wait_for(lambda: lab.holders([HALO, KA]) == [HALO], T, "halo holding the VIP")
            lab.cut(HALO)
            wait_for(lambda: KA in lab.holders([HALO, KA]), T, "keepalived taking the VIP")
            wait_for(lambda: lab.holders([HALO, KA]) == [KA], T, "keepalived alone holding the VIP")
            lab.heal(HALO)
            wait_for(lambda: lab.holders([HALO, KA]) == [HALO], T, "halo taking the VIP back")
        except (AssertionError, RuntimeError):
            dump(lab)
            raise
