#!/usr/bin/python3
"""Capture real keepalived adverts as test vectors for halo's VRRP codec.

Run as root with Debian's python3 (packages keepalived, tcpdump,
python3-scapy, iproute2):

    /usr/bin/python3 tests/vectors/capture_keepalived.py > tests/vectors/keepalived_vectors.txt

Everything happens in a private network namespace (a veth pair whose both
ends are inside it; nothing touches the root namespace) with addresses from
192.0.2.0/24 and 2001:db8::/32. keepalived runs one instance per kind of
advert; once each is master, tcpdump records its adverts; then keepalived
is stopped so it sends its priority-0 adverts, which are recorded too.

The expected field values come from the keepalived configuration below,
not from decoding the packets, so the Rust test (packet/tests.rs) checks
halo's decoder against keepalived's encoder. Output format: as
gen_vrrp_vectors.py.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time

from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.utils import rdpcap

NS = f"halo-kacap-{os.getpid()}"
SRC4 = "192.0.2.21"
PEER4 = "192.0.2.23"

# name -> (version, vrid, priority, advert_int seconds, vips, auth or None, unicast)
INSTANCES = {
    "ka_v2_auth": (2, 11, 200, 1, ["192.0.2.100"], b"secret12", False),
    "ka_v2_noauth": (2, 12, 150, 2, ["192.0.2.101", "192.0.2.102"], None, False),
    "ka_v3_v4": (3, 13, 100, 1, ["192.0.2.103"], None, False),
    "ka_v3_v4_fast": (3, 14, 254, 0.5, ["192.0.2.104", "192.0.2.105"], None, False),
    "ka_v3_v6": (3, 15, 120, 1, ["2001:db8::100", "2001:db8::101"], None, False),
    "ka_v3_v4_unicast": (3, 16, 110, 1, ["192.0.2.106"], None, True),
}


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


def nsx(*args, check=True):
    return sh("ip", "netns", "exec", NS, *args, check=check)


def config():
    out = ["global_defs {", "  router_id halo_capture", "  vrrp_garp_master_repeat 1",
           "  vrrp_garp_master_refresh 0", "}"]
    for name, (ver, vrid, prio, adv, vips, auth, uni) in INSTANCES.items():
        out += [f"vrrp_instance {name} {{", "  state BACKUP", "  interface kv0",
                f"  version {ver}", f"  virtual_router_id {vrid}",
                f"  priority {prio}", f"  advert_int {adv}"]
        if auth is not None:
            out += ["  authentication {", "    auth_type PASS",
                    f"    auth_pass {auth.decode()}", "  }"]
        if uni:
            out += [f"  unicast_src_ip {SRC4}", f"  unicast_peer {{ {PEER4} }}"]
        out += ["  virtual_ipaddress {"] + [f"    {v}" for v in vips] + ["  }", "}"]
    return "\n".join(out) + "\n"


def setup():
    sh("ip", "netns", "add", NS)
    nsx("ip", "link", "set", "lo", "up")
    # Bends a kernel default on purpose: keepalived is started at once and
    # its IPv6 instances need the link-local address, tentative for a
    # second or two under DAD. This script captures packet bytes, not
    # start-up behaviour; halo with DAD on (the default) is tested in
    # tests/vrrp/test_real_network.py.
    nsx("sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
    nsx("ip", "link", "add", "kv0", "type", "veth", "peer", "name", "kv1")
    nsx("ip", "addr", "add", f"{SRC4}/24", "dev", "kv0")
    nsx("ip", "link", "set", "kv0", "up")
    nsx("ip", "link", "set", "kv1", "up")
    # The unicast peer is not an address of this namespace (it would be
    # reached over loopback); a static neighbour entry sends it over kv0.
    mac = nsx("cat", "/sys/class/net/kv1/address").stdout.strip()
    nsx("ip", "neigh", "add", PEER4, "lladdr", mac, "dev", "kv0", "nud", "permanent")


def capture(tmp):
    conf = os.path.join(tmp, "keepalived.conf")
    with open(conf, "w") as f:
        f.write(config())
    pcap = os.path.join(tmp, "vrrp.pcap")
    tcpdump = subprocess.Popen(
        ["ip", "netns", "exec", NS, "tcpdump", "-i", "kv1", "-U", "-n", "-s", "0",
         "-w", pcap, "ip proto 112 or ip6 proto 112"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ka = None
    try:
        time.sleep(1)  # tcpdump attaches
        ka = subprocess.Popen(
            ["ip", "netns", "exec", NS, "keepalived", "--vrrp", "-n", "-l", "-D",
             "-f", conf, "-p", os.path.join(tmp, "ka.pid"),
             "-r", os.path.join(tmp, "vrrp.pid")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Slowest instance: 2 s adverts -> master after ~6.4 s; then a few adverts.
        time.sleep(12)
        ka.send_signal(signal.SIGTERM)
        ka.wait(timeout=10)
        ka = None
        time.sleep(1)
    finally:
        if ka is not None:
            ka.kill()
            ka.wait()
        tcpdump.send_signal(signal.SIGINT)
        tcpdump.wait(timeout=10)
    return rdpcap(pcap)


def vectors(packets):
    by_vrid = {v[1]: (name, v) for name, v in INSTANCES.items()}
    found = {}
    for p in packets:
        if IP in p:
            ip, msg, dgram = p[IP], bytes(p[IP].payload), bytes(p[IP])
            if ip.proto != 112:
                continue
        elif IPv6 in p:
            ip, msg, dgram = p[IPv6], bytes(p[IPv6].payload), None
        else:
            continue
        vrid, prio = msg[1], msg[2]
        if vrid not in by_vrid:
            continue
        name, (ver, _, cfg_prio, adv, vips, auth, uni) = by_vrid[vrid]
        kind = "shutdown" if prio == 0 else "advert"
        if (vrid, kind) in found:
            continue
        assert prio in (0, cfg_prio), f"{name}: priority {prio}"
        found[(vrid, kind)] = " | ".join([
            f"{name}_{kind}", ip.src, ip.dst, "0", str(ver), str(vrid), str(prio),
            str(int(round(adv * 100))), ",".join(vips),
            auth.ljust(8, b"\0").hex() if auth is not None else "-",
            msg.hex(), dgram.hex() if dgram is not None else "-"])
    missing = [(n, k) for n, v in INSTANCES.items() for k in ("advert", "shutdown")
               if (v[1], k) not in found]
    if missing:
        raise RuntimeError(f"no capture for {missing}")
    return [found[k] for k in sorted(found)]


def main():
    if os.geteuid() != 0:
        sys.exit("capture_keepalived: must run as root")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            setup()
            lines = vectors(capture(tmp))
        finally:
            sh("ip", "netns", "del", NS, check=False)
    ver = sh("keepalived", "--version", check=False).stderr.splitlines()[:1]
    print("# Captured from real keepalived by tests/vectors/capture_keepalived.py; do not edit.")
    print(f"# {' '.join(ver)}")
    print("# name | src | dst | v3_checksum_as_v2 | version | vrid | priority | "
          "interval_cs | addrs | auth | vrrp hex | ipv4 datagram hex")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
