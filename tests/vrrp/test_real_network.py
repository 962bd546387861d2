"""VRRP as a real network sees it (issue 12): what the lab used to hide.

Each test builds its own `halo lab` (tests/halolab.py) and checks the
kernel's view (addresses and their flags, neighbour entries) or the wire
itself: tcpdump runs inside a lab namespace and the test reads what it
printed. The lab keeps the kernel's defaults, duplicate address detection
included. Timings are not asserted; the waits are generous upper bounds.
"""

import os
import re

import pytest

from halolab import lab_factory, LB as LBS, VIP, Lab, alive, always_until, halo_bin, vrrp_toml, wait_for

# Upper bounds only; generous for a loaded 2-core machine.
T = 30
VIP6 = "2001:db8::100"
VIP6B = "2001:db8::101"


@pytest.fixture
def lab_of():
    """Build a lab of the given shape; always taken down after the test."""
    yield from lab_factory("rn")


def capture(lab, node, key, filt, count):
    """tcpdump on `node`'s eth0 until `count` packets matching `filt` were
    seen: one line per packet (-v adds the IP header: TOS, traffic class,
    ND flags; -e the Ethernet source). Returns once it listens; read the
    lines with lab.log(key)."""
    lab.spawn(key, node, ["tcpdump", "-l", "-n", "-e", "-v", "-i", "eth0", "-c", str(count), filt])
    wait_for(lambda: "listening on" in lab.log(key), T, f"tcpdump on {node} to listen")


def addr_flags(lab, node, addr):
    """The flags `ip addr` shows for `addr` on eth0 (tentative, dadfailed,
    nodad, ...), or None when it is not there."""
    r = lab.exec(node, "ip", "-o", "addr", "show", "dev", "eth0")
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[3].split("/")[0] == addr:
            return parts[4:]
    return None


def neigh_mac(lab, node, addr):
    r = lab.exec(node, "ip", "neigh", "show", addr, "dev", "eth0", check=False)
    parts = r.stdout.split()
    return parts[parts.index("lladdr") + 1] if "lladdr" in parts else None


def test_ipv6_vip_needs_no_dad_even_when_the_old_master_still_has_it(lab_of):
    # kill -9 leaves the VIP on lb1, which still answers duplicate address
    # detection for it: an address added with DAD is "dadfailed" on lb2 and
    # never usable. keepalived adds VIPs with IFA_F_NODAD; so does halo.
    t = lab_of(2, ipv6=True)
    cfg = lambda p: vrrp_toml(p, vips=(VIP6 + "/64",))
    t.run_halo("lb1", cfg(101))
    t.run_halo("lb2", cfg(100))
    wait_for(lambda: t.holders(["lb1", "lb2"], VIP6) == ["lb1"], T, "lb1 the only holder")
    t.kill("lb1")
    wait_for(lambda: VIP6 in t.addrs("lb2"), T, "lb2 to take the IPv6 VIP")
    # Usable at once: never tentative, and DAD never fails.
    flags = addr_flags(t, "lb2", VIP6)
    assert flags is not None and "tentative" not in flags and "dadfailed" not in flags, flags
    assert "nodad" in flags, flags
    # The client reaches the VIP (either holder answers: lb1's is stale).
    t.exec("client", "ping", "-6", "-c", "1", "-W", "10", VIP6)
    flags = addr_flags(t, "lb2", VIP6)
    assert "tentative" not in flags and "dadfailed" not in flags, flags


def test_waits_for_a_link_local_address_then_starts(lab_of):
    # At boot the link-local address can be missing (no carrier yet), then
    # tentative while DAD runs: halo must wait for it, not exit.
    t = lab_of(1, ipv6=True)
    t.cut("lb1")  # no carrier: the kernel makes no link-local address yet
    t.exec("lb1", "ip", "link", "set", "eth0", "down")
    t.exec("lb1", "ip", "link", "set", "eth0", "up")
    assert not [a for a in t.addrs("lb1") if a.startswith("fe80:")], t.addrs("lb1")
    path = t.write("lb1", "halo.toml", vrrp_toml(101, vips=(VIP6 + "/64",)))
    p = t.spawn("halo", "lb1", [halo_bin(), "run", "--config", path, "--socket", t.path("lb1", "halo.sock")])
    try:
        wait_for(lambda: "waiting for its link-local IPv6 address" in t.log("halo") or not alive(p.pid), T,
                 "halo to say it waits for the link-local address")
        assert alive(p.pid), t.log("halo")
        # `halo status` says so too.
        wait_for(lambda: t.vrrp("lb1") is not None, T, "halo to answer on its control socket")
        v = t.vrrp("lb1")
        assert v["state"] == "INIT" and "waiting for its link-local IPv6 address" in v["explanation"], v
        t.heal("lb1")  # carrier: the link-local address comes, tentative while DAD runs
        wait_for(lambda: VIP6 in t.addrs("lb1") or not alive(p.pid), T, "lb1 to become master")
        assert alive(p.pid), t.log("halo")
        assert re.search(r"VRID 51 on eth0 from fe80::", t.log("halo"))
    except AssertionError as e:
        raise AssertionError(f"{e}\n{t.log('halo')}") from None


def test_waits_for_an_ipv4_address_then_starts(lab_of):
    # At boot DHCP (or the network configuration) may not have given the
    # interface its address yet: halo must wait for it, not exit.
    t = lab_of(1)
    t.exec("lb1", "ip", "addr", "del", f"{LBS['lb1']}/24", "dev", "eth0")
    path = t.write("lb1", "halo.toml", vrrp_toml(101))
    p = t.spawn("halo", "lb1", [halo_bin(), "run", "--config", path, "--socket", t.path("lb1", "halo.sock")])
    try:
        wait_for(lambda: "waiting for an IPv4 address to send adverts from" in t.log("halo") or not alive(p.pid), T,
                 "halo to say it waits for an IPv4 address")
        assert alive(p.pid)
        wait_for(lambda: t.vrrp("lb1") is not None, T, "halo to answer on its control socket")
        v = t.vrrp("lb1")
        assert v["state"] == "INIT" and "waiting for an IPv4 address" in v["explanation"], v
        t.exec("lb1", "ip", "addr", "add", f"{LBS['lb1']}/24", "dev", "eth0")
        wait_for(lambda: VIP in t.addrs("lb1") or not alive(p.pid), T, "lb1 to become master")
        assert alive(p.pid)
        assert f"VRID 51 on eth0 from {LBS['lb1']}" in t.log("halo")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{t.log('halo')}") from None


def test_starts_when_the_link_local_address_is_still_tentative(lab_of):
    # The interface has just come up: its new link-local address stays
    # tentative for one to two seconds (DAD). halo is started the moment
    # `ip` shows it tentative; binding to it would fail ("Cannot assign
    # requested address"): halo must wait, not exit.
    t = lab_of(1, ipv6=True)
    path = t.write("lb1", "halo.toml", vrrp_toml(101, vips=(VIP6 + "/64",)))
    # Down and up again until `ip` is seen to show it tentative (a loaded
    # machine might be slower than DAD once), then halo at once.
    script = (
        "for i in 1 2 3 4 5 6 7 8 9 10; do ip link set eth0 down && ip link set eth0 up && "
        "if ip -6 -o addr show dev eth0 scope link tentative | grep -q fe80; then "
        "echo tentative at start; "
        f"exec {halo_bin()} run --config {path} --socket {t.path('lb1', 'halo.sock')}; "
        "fi; sleep 3; done; echo never saw it tentative; exit 1"
    )
    p = t.spawn("halo", "lb1", ["sh", "-c", script])
    try:
        wait_for(lambda: VIP6 in t.addrs("lb1") or not alive(p.pid), T, "lb1 to become master")
        assert alive(p.pid)
        assert "tentative at start" in t.log("halo")
        assert re.search(r"VRID 51 on eth0 from fe80::", t.log("halo"))
    except AssertionError as e:
        raise AssertionError(f"{e}\n{t.log('halo')}") from None


def test_unsolicited_na_has_router_and_override_flags_one_per_vip(lab_of):
    t = lab_of(2, ipv6=True)
    vips = (VIP6 + "/64", VIP6B + "/64")
    t.run_halo("lb1", vrrp_toml(101, vips=vips))
    t.run_halo("lb2", vrrp_toml(100, vips=vips))
    wait_for(lambda: t.holders(["lb1", "lb2"], VIP6B) == ["lb1"], T, "lb1 the only holder")
    for v in (VIP6, VIP6B):
        t.exec("client", "ping", "-6", "-c", "1", "-W", "10", v)
        assert neigh_mac(t, "client", v) == t.mac("lb1")
    # Neighbour advertisements (ICMPv6 type 136) from lb2 only: the
    # announcements of its takeover, garp_repeat (5) per VIP.
    lb2_mac = t.mac("lb2")
    capture(t, "client", "na", f"ether src {lb2_mac} and icmp6 and ip6[40] == 136", 10)
    t.stop("lb1")
    wait_for(lambda: t.holders(["lb1", "lb2"], VIP6) == ["lb2"], T, "lb2 to take over")
    for v in (VIP6, VIP6B):
        # RFC 5798 §6.4.2: Router flag set, Solicited unset, Override set.
        wait_for(lambda: re.search(rf"tgt is {re.escape(v)}, Flags \[router, override\]", t.log("na")), T,
                 f"an unsolicited NA for {v} with the Router and Override flags:\n{t.log('na')}")
        wait_for(lambda: neigh_mac(t, "client", v) == lb2_mac, T, f"the client's entry for {v} to follow")


def test_adverts_carry_tos_0xc0(lab_of):
    t = lab_of(1)
    capture(t, "client", "v4", "ip proto 112", 3)
    t.run_halo("lb1", vrrp_toml(101))
    wait_for(lambda: t.log("v4").count("proto VRRP") >= 3, T, f"three IPv4 adverts:\n{t.log('v4')}")
    heads = [line for line in t.log("v4").splitlines() if "proto VRRP" in line]
    assert all("tos 0xc0" in line for line in heads), heads


def test_ipv6_adverts_carry_traffic_class_0xc0(lab_of):
    t = lab_of(1, ipv6=True)
    capture(t, "client", "v6", "ip6 proto 112", 3)
    t.run_halo("lb1", vrrp_toml(101, vips=(VIP6 + "/64",)))
    wait_for(lambda: t.log("v6").count("hlim 255") >= 3, T, f"three IPv6 adverts:\n{t.log('v6')}")
    heads = [line for line in t.log("v6").splitlines() if "hlim 255" in line]
    assert len(heads) >= 3 and all("class 0xc0" in line for line in heads), t.log("v6")


def two_instances(priority, extra=""):
    """VI_1 (vrid 51, VIP) and VI_2 (vrid 52, 192.0.2.101) on eth0."""
    text = vrrp_toml(priority, extra=extra)
    for n in (2,):
        text += vrrp_toml(priority, extra=extra, vips=(f"192.0.2.{99 + n}/24",)) \
            .replace("[vrrp.VI_1]", f"[vrrp.VI_{n}]").replace("vrid = 51", f"vrid = {50 + n}")
    return text


def test_every_instance_removes_its_stale_vip_at_start(lab_of):
    t = lab_of(2)
    vips = [VIP, "192.0.2.101"]
    t.run_halo("lb1", two_instances(101))
    t.run_halo("lb2", two_instances(100))
    for v in vips:
        wait_for(lambda: t.holders(["lb1", "lb2"], v) == ["lb1"], T, f"lb1 the only holder of {v}")
    t.kill("lb1")  # kill -9: the VIPs stay on lb1's eth0
    for v in vips:
        wait_for(lambda: v in t.addrs("lb2"), T, f"lb2 to take {v}")
    assert all(v in t.addrs("lb1") for v in vips), t.addrs("lb1")
    # lb1 comes back as a backup (nopreempt): each instance removes its
    # stale VIP at start, and none comes back.
    mark = t.log_mark("lb1")
    t.run_halo("lb1", two_instances(101, "nopreempt = true"))

    def backups():
        s = t.status("lb1")
        return s is not None and len(s["vrrp"]) == 2 and all(
            v["state"] == "BACKUP" and v["master"] == LBS["lb2"] for v in s["vrrp"])

    wait_for(backups, T, "lb1's two instances backup of lb2")
    try:
        wait_for(lambda: not [v for v in vips if v in t.addrs("lb1")], T, "lb1 to hold no VIP")
        start = t.vrrp("lb1")["adverts_received"]
        always_until(lambda: not [v for v in vips if v in t.addrs("lb1")],
                     lambda: t.vrrp("lb1")["adverts_received"] >= start + 10, T, "no stale VIP on lb1")
    except AssertionError as e:
        raise AssertionError(f"{e}: {t.addrs('lb1')}\n{t.log('lb1', since=mark)}") from None
    assert "busy" not in t.log("lb1", since=mark), t.log("lb1", since=mark)


def test_ipv6_cable_cut_and_heal_with_dad_on(lab_of):
    # When the carrier comes back the kernel runs DAD again on every
    # address, the link-local one included: lb1 must come back as master
    # of the IPv6 VIP and the pair settle with one holder.
    t = lab_of(2, ipv6=True)
    cfg = lambda p: vrrp_toml(p, vips=(VIP6 + "/64",))
    t.run_halo("lb1", cfg(101))
    t.run_halo("lb2", cfg(100))
    wait_for(lambda: t.holders(["lb1", "lb2"], VIP6) == ["lb1"], T, "lb1 the only holder")
    t.cut("lb1")
    wait_for(lambda: t.holders(["lb1", "lb2"], VIP6) == ["lb2"], T, "lb2 master, lb1 in FAULT")
    t.heal("lb1")
    try:
        wait_for(lambda: t.holders(["lb1", "lb2"], VIP6) == ["lb1"], T, "lb1 master again")
        wait_for(lambda: (t.vrrp("lb2") or {}).get("state") == "BACKUP", T, "lb2 backup")
        start = t.vrrp("lb2")["adverts_received"]
        always_until(lambda: t.holders(["lb1", "lb2"], VIP6) == ["lb1"],
                     lambda: t.vrrp("lb2")["adverts_received"] >= start + 10, T, "lb1 the only holder")
        flags = addr_flags(t, "lb1", VIP6)
        assert "tentative" not in flags and "dadfailed" not in flags, flags
    except AssertionError as e:
        raise AssertionError(f"{e}\n{t.log('lb1')}\n{t.log('lb2')}") from None
