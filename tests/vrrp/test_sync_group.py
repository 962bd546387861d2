"""Sync groups (seed 002): a router's outside VIP and its inside gateway
address move together.

Two halo LBs of a `halo lab`, each with a second interface: the lab's
network is the outside (eth0, 192.0.2.0/24); the test adds an inside
network (eth1, 198.51.100.0/24) to the lab's own namespaces, a second bridge
in its switch namespace, so `halo lab down` removes it with the rest. Each
LB runs two instances in one `[vrrp_sync_group]`; the backup LB is halo or
Debian's keepalived with the same `vrrp_sync_group`. Cutting the master's
inside cable (its switch port down: the LB sees no carrier) puts its inside
instance in FAULT; the group makes the outside instance hand over too, so
both VIPs move to the backup, and `halo status` says why the outside
instance followed. Healing the cable brings both back. Who holds an address
is read from the kernel; no timing is asserted (generous upper bounds).
"""

import os
import subprocess

import pytest

from halolab import LB, Lab, wait_for

T = 60
OUT_VIP, IN_VIP = "192.0.2.100", "198.51.100.1"
INSIDE = {n: f"198.51.100.{10 + i}" for i, n in ((1, "lb1"), (2, "lb2"))}


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def add_inside_network(lab, nodes):
    """A second bridge in the lab's switch namespace and an eth1 on each
    node, as the lab builds eth0 (veth made in the switch namespace, the
    node's end moved straight into the node)."""
    sw = lab.ns("switch")
    ip("-n", sw, "link", "add", "br1", "type", "bridge")
    ip("-n", sw, "link", "set", "br1", "up")
    for n in nodes:
        port = f"q-{n}"
        ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth1", "netns", lab.ns(n))
        ip("-n", sw, "link", "set", port, "master", "br1")
        ip("-n", sw, "link", "set", port, "up")
        ip("-n", lab.ns(n), "addr", "add", f"{INSIDE[n]}/24", "dev", "eth1")
        ip("-n", lab.ns(n), "link", "set", "eth1", "up")


def inside_cable(lab, node, up):
    ip("-n", lab.ns("switch"), "link", "set", f"q-{node}", "up" if up else "down")


def cfg(priority, interval="100ms", hook=None):
    group_hooks = ""
    if hook:
        group_hooks = (f'notify_master = ["{hook}", "MASTER"]\nnotify_fault = ["{hook}", "FAULT"]\n'
                       f'notify_backup = ["{hook}", "BACKUP"]\nscript_user = "root"\n')
    return f"""
[vrrp.OUT]
interface = "eth0"
vrid = 51
priority = {priority}
advert_interval = "{interval}"
virtual_ips = ["{OUT_VIP}/24"]

[vrrp.IN]
interface = "eth1"
vrid = 52
priority = {priority}
advert_interval = "{interval}"
virtual_ips = ["{IN_VIP}/24"]

[vrrp_sync_group.gateway]
instances = ["OUT", "IN"]
{group_hooks}"""


def keepalived_cfg(priority):
    def inst(name, ifname, vrid, vip):
        return f"""
vrrp_instance {name} {{
  state BACKUP
  interface {ifname}
  virtual_router_id {vrid}
  priority {priority}
  advert_int 1
  virtual_ipaddress {{
    {vip}/24
  }}
}}
"""
    return ("global_defs {\n  vrrp_version 3\n  script_user root\n  enable_script_security\n}\n"
            "vrrp_sync_group gateway {\n  group {\n    OUT\n    IN\n  }\n}\n"
            + inst("OUT", "eth0", 51, OUT_VIP) + inst("IN", "eth1", 52, IN_VIP))


def holders(lab):
    nodes = ["lb1", "lb2"]
    return (
        [n for n in nodes if OUT_VIP in lab.addrs(n, "eth0")],
        [n for n in nodes if IN_VIP in lab.addrs(n, "eth1")],
    )


def instance(lab, node, name):
    s = lab.status(node) or {}
    return next((v for v in s.get("vrrp", []) if v["name"] == name), None)


@pytest.mark.parametrize("peer", ["halo", "keepalived"])
def test_cutting_one_cable_of_the_master_moves_both_vips_and_healing_brings_them_back(peer):
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    with Lab("syn", lbs=2, backends=0) as lab:
        add_inside_network(lab, ["lb1", "lb2"])
        # The group's hooks on lb1 record the group's states.
        ev = os.path.join(lab.dir, "group-events")
        hook = lab.write("lb1", "group.sh", f'#!/bin/sh\necho "$1" >> {ev}\n', mode=0o755)

        def group_events():
            try:
                with open(ev) as f:
                    return f.read().split()
            except FileNotFoundError:
                return []

        if peer == "halo":
            lab.run_halo("lb1", cfg(110, hook=hook))
            lab.run_halo("lb2", cfg(100))
        else:
            try:
                os.remove(lab.path("lb2", "halo.toml"))
            except FileNotFoundError:
                pass
            lab.write("lb2", "keepalived.conf", keepalived_cfg(100))
            lab.start("lb2")
            lab.run_halo("lb1", cfg(110, "1s", hook=hook))
        try:
            wait_for(lambda: holders(lab) == (["lb1"], ["lb1"]), T, "lb1 holding both VIPs")
            wait_for(lambda: group_events()[-1:] == ["MASTER"], T, "the group's notify_master")
            inside_cable(lab, "lb1", False)
            wait_for(lambda: holders(lab) == (["lb2"], ["lb2"]), T, "both VIPs on lb2 after lb1's inside cable is cut")
            out = instance(lab, "lb1", "OUT")
            assert out["state"] == "BACKUP", out
            assert "following sync group gateway: IN is FAULT" in out["explanation"], out
            assert instance(lab, "lb1", "IN")["state"] == "FAULT"
            wait_for(lambda: "FAULT" in group_events(), T, "the group's notify_fault")
            inside_cable(lab, "lb1", True)
            wait_for(lambda: holders(lab) == (["lb1"], ["lb1"]), T, "both VIPs back on lb1 after healing")
            wait_for(lambda: group_events()[-1:] == ["MASTER"], T, "the group's notify_master again")
            assert "following sync group" not in instance(lab, "lb1", "OUT")["explanation"]
        except (AssertionError, RuntimeError, subprocess.CalledProcessError):
            print("--- group events ---\n" + " ".join(group_events()))
            print("--- lb1 ---\n" + lab.log("lb1"))
            print("--- lb2 ---\n" + lab.log("lb2", "halo" if peer == "halo" else "keepalived"))
            raise
