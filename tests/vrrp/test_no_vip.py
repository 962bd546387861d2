"""An instance that holds no address (seed 000), with keepalived as the peer.

Seed 000 runs keepalived with unicast peers and no `virtual_ipaddress`: the
election decides who is master and `notify_master` moves a cloud provider's
floating IP through its API. Here halo (lb1) and Debian's keepalived (lb2)
run such an instance (VRRPv2, unicast, PASS authentication, as the seed) in
a `halo lab`. The notify hooks record the states they were run for; the
kernel's view shows that neither node adds an address. halo, the higher
priority, becomes master and runs notify_master while keepalived runs
notify_backup; `halo status` says the instance holds no address; when halo
stops, keepalived runs notify_master. No timing is asserted: the waits are
generous upper bounds.
"""

import os
import shutil
import subprocess

import pytest

from halolab import LB, Lab, always_until, halo_bin, wait_for

T = 60
HALO, KA = "lb1", "lb2"
HALO_IP, KA_IP = LB[HALO], LB[KA]


def hook(lab, node, who):
    """A notify script on `node` appending "WHO STATE" to the lab's events file."""
    events = os.path.join(lab.dir, "events")
    path = lab.write(node, "notify.sh", f'#!/bin/sh\necho "{who} $1" >> {events}\n', mode=0o755)
    return path, events


def halo_cfg(script, priority=110):
    return f"""
[vrrp.VI_1]
interface = "eth0"
vrid = 42
version = 2
priority = {priority}
advert_interval = "1s"
auth_pass = "AaP51Mdi"
unicast_src = "{HALO_IP}"
unicast_peers = ["{KA_IP}"]
script_user = "root"
notify_master = ["{script}", "MASTER"]
notify_backup = ["{script}", "BACKUP"]
"""


def keepalived_cfg(script):
    # Seed 000's instance: no virtual_ipaddress, a notify_master.
    return f"""
global_defs {{
  script_user root
  enable_script_security
}}
vrrp_instance VI_1 {{
  interface eth0
  state BACKUP
  priority 100
  virtual_router_id 42
  advert_int 1
  unicast_src_ip {KA_IP}
  unicast_peer {{
    {HALO_IP}
  }}
  authentication {{
    auth_type PASS
    auth_pass AaP51Mdi
  }}
  notify_master "{script} MASTER"
  notify_backup "{script} BACKUP"
}}
"""


def events(path):
    try:
        with open(path) as f:
            return [e for e in f.read().split("\n") if e]
    except FileNotFoundError:
        return []


def last(evs, who):
    mine = [e for e in evs if e.startswith(who + " ")]
    return mine[-1] if mine else None


def test_election_and_hooks_without_an_address():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    ka = shutil.which("keepalived") or "/usr/sbin/keepalived"
    assert os.path.exists(ka), "keepalived is installed by tests/lib/install-deps.sh"
    with Lab("nov", lbs=2, backends=0) as lab:
        h_script, ev = hook(lab, HALO, "halo")
        k_script, _ = hook(lab, KA, "keepalived")
        before = {n: sorted(lab.addrs(n)) for n in (HALO, KA)}
        lab.write(HALO, "halo.toml", halo_cfg(h_script))
        try:
            os.remove(lab.path(KA, "halo.toml"))
        except FileNotFoundError:
            pass
        lab.write(KA, "keepalived.conf", keepalived_cfg(k_script))
        lab.start(KA)
        lab.start(HALO)
        try:
            wait_for(lambda: "halo MASTER" in events(ev), T, "halo's notify_master")
            wait_for(lambda: (lab.vrrp(HALO) or {}).get("state") == "MASTER", T, "halo MASTER")
            # keepalived heard halo's adverts with no address in them (the
            # same empty list as its own) and stays, or went back to, backup.
            # keepalived takes halo's adverts, which carry no address (as its
            # own list): it stays backup over more adverts than its master
            # down interval lasts (counted, not slept).
            # Both may time out together at start (keepalived, started
            # first, can be master for a moment): wait for it to yield.
            wait_for(lambda: last(events(ev), "keepalived") == "keepalived BACKUP", T,
                     "keepalived's notify_backup as its last hook")
            sent = lab.vrrp(HALO)["adverts_sent"]
            always_until(lambda: last(events(ev), "keepalived") == "keepalived BACKUP",
                         lambda: lab.vrrp(HALO)["adverts_sent"] >= sent + 5, T,
                         "keepalived backup while halo advertises")
            v = lab.vrrp(HALO)
            assert v["vips"] == [], v
            assert v["adverts_sent"] > 0, v
            assert not any("vip" in k.lower() for k in v["drops"]), v["drops"]
            text = subprocess.run([halo_bin(), "status", "--socket", lab.path(HALO, "halo.sock")],
                                  capture_output=True, text=True, timeout=30).stdout
            assert "vips:    none: this instance holds no address" in text, text
            # Neither node added an address: the hooks are what acts.
            assert {n: sorted(lab.addrs(n)) for n in (HALO, KA)} == before
            # halo leaves (priority 0): keepalived takes over and says so.
            n = len(events(ev))
            lab.stop(HALO)
            wait_for(lambda: "keepalived MASTER" in events(ev)[n:], T, "keepalived's notify_master")
            assert sorted(lab.addrs(KA)) == before[KA]
            # And the other way: halo, now lower, hears keepalived's adverts
            # with no address and stays its backup.
            lab.write(HALO, "halo.toml", halo_cfg(h_script, priority=90))
            lab.start(HALO)
            wait_for(lambda: (lab.vrrp(HALO) or {}).get("master") == KA_IP, T, "halo seeing keepalived as master")
            got = lab.vrrp(HALO)["adverts_received"]
            always_until(lambda: lab.vrrp(HALO)["state"] == "BACKUP",
                         lambda: lab.vrrp(HALO)["adverts_received"] >= got + 5, T,
                         "halo backup while keepalived advertises")
            assert last(events(ev), "halo") == "halo BACKUP"
        except (AssertionError, RuntimeError):
            print("--- events ---\n" + "\n".join(events(ev)))
            print("--- halo log ---\n" + lab.log(HALO))
            print("--- keepalived log ---\n" + lab.log(KA, "keepalived"))
            raise
