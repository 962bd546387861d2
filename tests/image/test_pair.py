"""Two cards from the image, lb1 and lb2, boot side by side in
qemu-system-aarch64 (-M virt, TCG) on a `halo lab` network and elect one
master: issue 7's stretch goal.

The network is the suite's one harness (tests/halolab.py): `halo lab up
--no-start` builds halo-NAME-{sw,lb1,lb2,web1,client} on 192.0.2.0/24, and
the lab's nginx on web1 (192.0.2.21) is the backend. Inside each LB's
namespace the VM takes the place of the namespace's eth0: a bridge `vm0`
holds eth0 (its address flushed: the VM owns 192.0.2.1N) and a tap `tap0`
that qemu, started in that namespace, attaches to. So the VMs talk VRRP to
each other and reach the backend and the client through the lab's switch;
nothing is in the root namespace.

Each VM's disk is a qcow2 overlay on the built image (not a copy), holding
only its card's halo/ settings from `halo-image node`: the same halo.toml on
both, priority 150 on lb1 and 100 on lb2 from node.toml. The checks: both
reach HALO-READY; lb1 alone holds the VIP (`halo status` over SSH from the
client: MASTER on lb1, BACKUP on lb2, the VIP on lb1's eth0 only); the client
gets web1's page through the VIP and its ARP entry for the VIP is lb1's MAC;
then lb1's qemu is SIGKILLed and lb2 takes the VIP, the client's ARP entry
moves to lb2's MAC and the page still comes through the VIP."""

import json
import os
import signal
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (BOOT_FAILURES, BOOT_TIMEOUT, RESTART_ON, SECOND_BOOT_FAILURES, Console, GuestStalled,
                      boot_files, card_overlay, qemu_command, ssh_keygen)
from halolab import LB, VIP, WEB, Lab, wait_for

NODES = {"lb1": 150, "lb2": 100}
MAC = {"lb1": "52:54:00:c0:02:11", "lb2": "52:54:00:c0:02:12"}
# Each VM one virtual CPU: two VMs on a 2-core machine, one TCG thread each.
SMP = int(os.environ.get("HALO_IMAGE_PAIR_SMP", "1"))

HALO_TOML = f"""\
# The pair test's cluster: lb1 and lb2 share the VIP in front of the lab's web1.
[vrrp.VI_1]
interface = "eth0"
vrid = 51
priority = 100          # each card's node.toml replaces this (150, 100)
advert_interval = "1s"
virtual_ips = ["{VIP}/24"]
track = [{{ proxy = "web", weight = -60 }}]

[proxy.web]
bind = ["0.0.0.0:80"]
servers = [{{ name = "web1", address = "{WEB['web1']}:80" }}]

[proxy.web.health]
path = "/health"
interval = "1s"
rise = 1
fall = 2
"""


class PairVm(Console):
    def __init__(self, name, proc, console, stderr):
        super().__init__(console, proc, stderr)
        self.name = name
        self.addr = LB[name]
        self.mac = MAC[name]
        # What fails its boot and what restarts it: the first boot's, then
        # the second's (as Console.boot; restarter).
        self.failures, self.restart_on = BOOT_FAILURES, RESTART_ON


def restarter(lab, vm, cmd, overlay, made):
    """Stop the stalled VM, set its console aside, put its card back as
    made and start it again, once."""
    def restart(e):
        lab.signal(f"vm-{vm.name}")
        vm.set_aside(f"{vm.name}: {e}")
        shutil.copyfile(made, overlay)
        vm.proc = lab.spawn(f"vm-{vm.name}", vm.name, cmd)
        vm.failures, vm.restart_on = SECOND_BOOT_FAILURES, []
    return restart


def vm_network(lab, node):
    """The VM in place of the node's eth0: bridge vm0 = eth0 + tap0."""
    for cmd in (
        ["ip", "addr", "flush", "dev", "eth0"],
        ["ip", "link", "add", "vm0", "type", "bridge"],
        ["ip", "link", "set", "eth0", "master", "vm0"],
        ["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"],
        ["ip", "link", "set", "tap0", "master", "vm0"],
        ["ip", "link", "set", "tap0", "up"],
        ["ip", "link", "set", "vm0", "up"],
    ):
        lab.exec(node, *cmd)


def ssh(lab, key, vm, command, timeout=180):
    """`ssh root@VM COMMAND` from the lab's client namespace; a timeout is
    an ssh that failed (exit 255), which the callers poll through."""
    try:
        return lab.exec(
            "client", "ssh", "-i", key,
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=30", "-o", "LogLevel=ERROR",
            f"root@{vm.addr}", command, check=False, timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(e.cmd, 255, "", f"ssh timed out after {timeout} s")


def holds_vip(lab, key, vm):
    """Whether the VM's own kernel has the VIP on eth0 (None: no answer)."""
    r = ssh(lab, key, vm, "ip -o addr show dev eth0")
    if r.returncode != 0:
        return None
    return f"inet {VIP}/24" in r.stdout


def status(lab, key, vm):
    """The VM's one VRRP instance as `halo status --json` reports it."""
    r = ssh(lab, key, vm, "halo status --json")
    assert r.returncode == 0, f"{vm.name}: halo status: {r.stderr}"
    vrrp = json.loads(r.stdout)["vrrp"]
    assert len(vrrp) == 1, vrrp
    return vrrp[0]


def page(lab):
    try:
        r = lab.exec("client", "curl", "-fsS", "--max-time", "20", f"http://{VIP}/", check=False, timeout=60)
    except subprocess.TimeoutExpired:
        return None
    return r.stdout if r.returncode == 0 else None


def vip_mac(lab):
    r = lab.exec("client", "ip", "neigh", "show", VIP, "dev", "eth0", check=False)
    parts = r.stdout.split()
    return parts[parts.index("lladdr") + 1] if "lladdr" in parts else None


@pytest.fixture(scope="module")
def pair(image, halo_bin, tmp_path_factory):
    # halo_bin: a host halo for `halo lab` (halolab finds the same binary).
    tmp = tmp_path_factory.mktemp("pair")
    key = ssh_keygen(tmp / "id_ed25519")
    conf = tmp / "halo.toml"
    conf.write_text(HALO_TOML)
    with Lab("img", lbs=2, backends=1) as lab:
        lab.start("web1")
        vms = {}
        t0 = time.monotonic()
        try:
            for name, prio in NODES.items():
                d = tmp / name
                d.mkdir()
                overlay = d / "disk.qcow2"
                boot = card_overlay(
                    image, overlay, d, "--hostname", name, "--address", f"{LB[name]}/24",
                    "--priority", prio, "--ssh-key", f"{key}.pub", "--halo-toml", conf,
                )
                kernel, initrd, cmdline = boot_files(boot, d)
                boot.unlink()
                # The card as made, for a second start (a stalled guest,
                # as Console.boot does for one VM): the boot writes into
                # the overlay.
                shutil.copyfile(overlay, d / "disk-made.qcow2")
                vm_network(lab, name)
                console = d / "console.log"
                cmd = qemu_command(
                    kernel, initrd, cmdline, console, f"file={overlay},if=virtio,format=qcow2",
                    [
                        "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
                        "-device", f"virtio-net-pci,netdev=n0,mac={MAC[name]},romfile=",
                    ],
                    smp=SMP,
                )
                proc = lab.spawn(f"vm-{name}", name, cmd)
                vms[name] = PairVm(name, proc, console, lab.procs[f"vm-{name}"][1])
                vms[name].restart = restarter(lab, vms[name], cmd, overlay, d / "disk-made.qcow2")
            prep = time.monotonic() - t0
            # Both boot at once; each one's time is when its line appears.
            pending = list(vms.values())
            deadline = time.monotonic() + BOOT_TIMEOUT
            while pending:
                for vm in list(pending):
                    try:
                        ready = vm.check(rf"HALO-READY {vm.name}", vm.failures, vm.restart_on)
                    except GuestStalled as e:
                        vm.restart(e)
                        deadline = time.monotonic() + BOOT_TIMEOUT
                        continue
                    if ready:
                        vm.ready_after = time.monotonic() - t0
                        pending.remove(vm)
                if pending and time.monotonic() > deadline:
                    pytest.fail(f"no HALO-READY from {[v.name for v in pending]} after {BOOT_TIMEOUT} s:\n"
                                + "\n".join(v.tail() for v in pending))
                time.sleep(1)
            print(f"\ncards (qcow2 overlays) ready in {prep:.0f} s; HALO-READY after "
                  + ", ".join(f"{n} {v.ready_after:.0f} s" for n, v in vms.items())
                  + f" (TCG, -smp {SMP} each, booting in parallel)")
            out = Path(os.environ.get("HALO_IMAGE_OUT", Path(image).parent))
            (out / "pair-boot-time.txt").write_text(
                " ".join(f"{n}={v.ready_after:.0f}" for n, v in vms.items()) + f" smp={SMP}\n")
            yield lab, key, vms
        finally:
            for vm in vms.values():
                print(f"--- {vm.name} console tail\n{vm.tail(25)}")


def test_both_cards_boot_to_halo_ready(pair):
    _, _, vms = pair
    for vm in vms.values():
        text = vm.text()
        assert f"HALO-READY {vm.name}" in text
        assert "halo-firstboot: applied" in text and f"(host {vm.name})" in text


def test_lb1_alone_is_master_and_the_page_comes_through_the_vip(pair):
    lab, key, vms = pair
    lb1, lb2 = vms["lb1"], vms["lb2"]
    # lb1 (150) preempts lb2 (100) once both run; the health check must
    # first see web1 up (rise = 1, 1 s).
    wait_for(lambda: holds_vip(lab, key, lb1) is True and holds_vip(lab, key, lb2) is False,
             600, "the VIP on lb1 and not on lb2", step=5)
    body = wait_for(lambda: page(lab), 300, "web1's page through the VIP", step=3)
    assert body.startswith(f"web1: hello from {WEB['web1']}"), body
    # The client's ARP entry for the VIP: lb1's MAC, not lb2's.
    assert vip_mac(lab) == lb1.mac
    s1, s2 = status(lab, key, lb1), status(lab, key, lb2)
    assert s1["state"] == "MASTER", s1
    assert s1["base_priority"] == 150, "node.toml's priority replaces halo.toml's: " + repr(s1)
    assert s2["state"] == "BACKUP", s2
    assert s2["base_priority"] == 100, s2
    # lb2 hears lb1's adverts over the lab's switch.
    assert any(p["priority"] == 150 and LB["lb1"] in p["address"] for p in s2["peers"]), s2["peers"]
    # Still exactly one holder after the status round trip.
    assert holds_vip(lab, key, lb1) is True
    assert holds_vip(lab, key, lb2) is False


def test_lb2_takes_over_when_lb1_dies(pair):
    lab, key, vms = pair
    lb2 = vms["lb2"]
    t0 = time.monotonic()
    assert lab.signal("vm-lb1", signal.SIGKILL) == -signal.SIGKILL
    wait_for(lambda: holds_vip(lab, key, lb2), 300, "the VIP on lb2 after lb1's qemu was killed", step=3)
    # Seen through SSH polls into a TCG guest: an upper bound, not a measure.
    print(f"\nlb2 held the VIP within {time.monotonic() - t0:.0f} s of lb1's SIGKILL")
    wait_for(lambda: page(lab) is not None and vip_mac(lab) == lb2.mac, 300, "the client's ARP entry for the VIP on lb2's MAC", step=2)
    body = wait_for(lambda: page(lab), 300, "web1's page through the VIP from lb2", step=3)
    assert body.startswith(f"web1: hello from {WEB['web1']}"), body
    assert status(lab, key, lb2)["state"] == "MASTER"
