"""`[l4.NAME]`: halo balancing in the kernel through nftables, against the
lab's real nginx backends (web1..web3), the client on the same link.

lb1 holds the VIP (VRRP) and programs its own `halo_l4` table; each test
checks what the client gets (which backend answered), what halo reports
(`halo status --json`) and what the kernel holds (`nft list ruleset` in
lb1's namespace). Waits are bounded, never asserted.
"""

import json
import os
import re

import pytest

from halolab import VIP, WEB, Lab, vrrp_toml, wait_for

# Upper bounds only; generous for a loaded 2-core machine.
T = 30

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


def l4_toml(extra="", servers=None, health=True):
    servers = servers or [f'{{ name = "{w}", address = "{WEB[w]}:80" }}' for w in ("web1", "web2", "web3")]
    listed = ",\n  ".join(servers)
    text = f"""
[l4.web]
address = "{VIP}"
port = 80
{extra}
servers = [
  {listed},
]
"""
    if health:
        text += """
[l4.web.health]
path = "/health"
interval = "300ms"
timeout = "200ms"
rise = 2
fall = 2
"""
    return text


def get(lab, path="/"):
    """One new connection from the client to the VIP: the backend's name,
    or None."""
    r = lab.exec("client", "curl", "-s", "-m", "3", f"http://{VIP}{path}", check=False)
    m = re.match(r"(web\d): hello", r.stdout)
    return m.group(1) if m else None


def answers(lab, n):
    out = [get(lab) for _ in range(n)]
    assert None not in out, out
    return out


def ruleset(lab, node="lb1"):
    return lab.exec(node, "nft", "list", "ruleset").stdout


def l4_status(lab):
    s = lab.status("lb1")
    return s["l4"][0] if s and s.get("l4") else None


def in_map(lab):
    st = l4_status(lab)
    return sorted(v["name"] for v in st["servers"] if v["in_map"]) if st else None


def halo_cli(lab, *args):
    import subprocess

    from localfix import halo_bin

    r = subprocess.run([halo_bin(), *args, "--socket", lab.path("lb1", "halo.sock")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def start_nat(lab, conf):
    # LVS-NAT: the balancer routes between the client and the servers, so it
    # must forward IPv4. A new namespace starts with forwarding off (the
    # kernel default), as a fresh Debian does; halo warns about it.
    lab.exec("lb1", "sysctl", "-qw", "net.ipv4.ip_forward=1")
    for w in [f"web{n}" for n in range(1, lab.backends + 1)]:
        lab.start(w)
    lab.run_halo("lb1", vrrp_toml(150) + conf)
    wait_for(lambda: lab.holders(["lb1"], VIP) == ["lb1"], T, "lb1 to hold the VIP")


def test_nat_round_robin_and_a_stopped_backend_leaves_the_map():
    with Lab("l4n", lbs=1, backends=3) as lab:
        start_nat(lab, l4_toml())
        try:
            wait_for(lambda: in_map(lab) == ["web1", "web2", "web3"], T, "three servers in the map")
            wait_for(lambda: get(lab) is not None, T, "a page through the VIP")
            got = answers(lab, 9)
            # numgen inc: one connection each in turn.
            assert sorted(got.count(w) for w in ("web1", "web2", "web3")) == [3, 3, 3], got
            assert "numgen inc mod 3" in ruleset(lab)

            lab.kill("web2")
            wait_for(lambda: in_map(lab) == ["web1", "web3"], T, "web2 out of the map")
            assert "numgen inc mod 2" in ruleset(lab)
            got = answers(lab, 6)
            assert set(got) == {"web1", "web3"}, got

            # NAT counts the first packet of each connection it scheduled,
            # across the table's rebuilds: 3 + 3 for web1 by now.
            def server(name):
                return next(v for v in l4_status(lab)["servers"] if v["name"] == name)
            wait_for(lambda: server("web1")["packets"] >= 6, T, "web1's counter")
            assert not server("web2")["healthy"]
            lab.start("web2")
            wait_for(lambda: in_map(lab) == ["web1", "web2", "web3"], T, "web2 back in the map")

            # An operator drains web3: out of the map, healthy all along.
            halo_cli(lab, "server", "drain", "web/web3")
            wait_for(lambda: in_map(lab) == ["web1", "web2"], T, "web3 drained")
            assert set(answers(lab, 4)) == {"web1", "web2"}
            # A reload that changes the checks starts a new board: the drain
            # carries over by name.
            lab.write("lb1", "halo.toml", vrrp_toml(150) + l4_toml().replace('interval = "300ms"', 'interval = "400ms"'))
            lab.reload("lb1")
            rs = ruleset(lab)
            assert "numgen inc mod 2" in rs and "goto srv.web.web3" not in rs, rs
            assert in_map(lab) == ["web1", "web2"]
            halo_cli(lab, "server", "enable", "web/web3")
            wait_for(lambda: in_map(lab) == ["web1", "web2", "web3"], T, "web3 enabled")

            # A reload naming an interface lb1 does not have changes nothing.
            lab.write("lb1", "halo.toml", vrrp_toml(150) + l4_toml('forward = "dr"\ninterface = "eth9"'))
            with pytest.raises(RuntimeError, match="interface eth9 does not exist.*still running the previous config"):
                lab.reload("lb1")
            assert "table netdev halo_l4" not in ruleset(lab)
            # The running generation was not touched: web1's counter goes on.
            assert l4_status(lab)["servers"][0]["packets"] >= 6
            assert sorted(set(answers(lab, 6))) == ["web1", "web2", "web3"]
        except AssertionError:
            print(lab.log("lb1"))
            raise


def test_persistence_keeps_a_client_on_its_server():
    with Lab("l4p", lbs=1, backends=3) as lab:
        start_nat(lab, l4_toml('persistence = "1m"'))
        try:
            wait_for(lambda: get(lab) is not None, T, "a page through the VIP")
            first = get(lab)
            got = answers(lab, 6)
            assert set(got) == {first}, (first, got)
            assert re.search(r"set p4\.web\.%s\.60 \{[^}]*elements = \{ 192\.0\.2\.2 " % first,
                             ruleset(lab)), ruleset(lab)
            # Its server going down sends the client elsewhere, and it stays there.
            lab.kill(first)
            wait_for(lambda: first not in in_map(lab), T, f"{first} out of the map")
            second = get(lab)
            assert second not in (None, first)
            assert set(answers(lab, 4)) == {second}
        except AssertionError:
            print(lab.log("lb1"))
            raise


KEEP = "table inet keepme {\n\tchain c {\n\t\tcounter packets 0 bytes 0\n\t}\n}"


def test_reload_changes_weights_keeps_flows_and_other_tables_survive():
    with Lab("l4r", lbs=1, backends=3) as lab:
        # Someone else's table on the balancer, before halo starts.
        lab.exec("lb1", "nft", "-f", "-", input="add table inet keepme\nadd chain inet keepme c\nadd rule inet keepme c counter\n")
        start_nat(lab, l4_toml())
        try:
            wait_for(lambda: get(lab) is not None, T, "a page through the VIP")
            assert KEEP in ruleset(lab)
            assert "table inet halo_l4" in ruleset(lab)

            # An established connection, kept open across the reload.
            conn = lab.spawn("conn", "client", ["python3", "-c", KEEPALIVE_CLIENT, VIP, lab.path("client", "go")])
            wait_for(lambda: "first" in lab.log("conn"), T, "the first answer on the kept connection")

            # web3 fails; the reload keeps the same servers and checks, so
            # web3 stays out of the map (a fresh board would start it UP).
            lab.kill("web3")
            wait_for(lambda: in_map(lab) == ["web1", "web2"], T, "web3 out of the map")
            servers = [f'{{ name = "web1", address = "{WEB["web1"]}:80", weight = 2 }}',
                       f'{{ name = "web2", address = "{WEB["web2"]}:80" }}',
                       f'{{ name = "web3", address = "{WEB["web3"]}:80" }}']
            lab.write("lb1", "halo.toml", vrrp_toml(150) + l4_toml('scheduler = "wrr"', servers))
            lab.reload("lb1")
            rs = ruleset(lab)
            assert "numgen inc mod 3" in rs and "goto srv.web.web3" not in rs, rs
            got = answers(lab, 6)
            assert sorted(got) == ["web1"] * 4 + ["web2"] * 2, got
            assert KEEP in ruleset(lab)

            open(lab.path("client", "go"), "w").close()
            assert conn.wait(timeout=T) == 0, lab.log("conn")
            out = lab.log("conn")
            first, second = re.findall(r"(first|second) (web\d)", out)
            assert first[1] == second[1], out

            # `nft flush ruleset` (a firewall script, say) removes every
            # table: halo writes its own again, the other stays gone.
            lab.exec("lb1", "nft", "flush", "ruleset")
            wait_for(lambda: "table inet halo_l4" in ruleset(lab), T, "halo's table back")
            assert set(answers(lab, 3)) <= {"web1", "web2"}
            lab.exec("lb1", "nft", "-f", "-", input="add table inet keepme\nadd chain inet keepme c\nadd rule inet keepme c counter\n")

            lab.stop("lb1")
            rs = ruleset(lab)
            assert "halo_l4" not in rs, rs
            assert KEEP in rs
        except AssertionError:
            print(lab.log("lb1"))
            raise


# Two requests on one connection, the second once the file argv[2] exists.
KEEPALIVE_CLIENT = r"""
import os, socket, sys, time
vip, go = sys.argv[1], sys.argv[2]
s = socket.create_connection((vip, 80), timeout=10)
def ask(tag):
    s.sendall(b"GET / HTTP/1.1\r\nHost: l4\r\n\r\n")
    data = b""
    while b"hello" not in data or not data.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("closed by " + repr(data))
        data += chunk
    print(tag, data.split(b"\r\n\r\n", 1)[1].split(b":")[0].decode(), flush=True)
ask("first")
end = time.monotonic() + 60
while not os.path.exists(go):
    if time.monotonic() > end:
        raise SystemExit("no go")
    time.sleep(0.05)
ask("second")
"""


def start_dr_backends(lab, names=("web1", "web2", "web3")):
    """LVS direct routing on the backends (seed 004's notify.sh): the VIP on
    `lo`, so they accept packets for it, and ARP bent so they never answer
    or announce it (arp_ignore=1: answer only for addresses on the asking
    interface; arp_announce=2: never use the VIP as the ARP source). These
    two sysctls leave the kernel defaults on purpose, as LVS-DR requires;
    the balancer keeps every default. nginx also listens on the VIP."""
    for w in names:
        for key in ("all", "eth0"):
            lab.exec(w, "sysctl", "-qw", f"net.ipv4.conf.{key}.arp_ignore=1")
            lab.exec(w, "sysctl", "-qw", f"net.ipv4.conf.{key}.arp_announce=2")
        lab.exec(w, "ip", "addr", "add", f"{VIP}/32", "dev", "lo")
        conf = lab.path(w, "nginx.conf")
        with open(conf) as f:
            text = f.read()
        text = text.replace(f"listen {WEB[w]}:80;", f"listen {WEB[w]}:80;\n    listen {VIP}:80;")
        with open(conf, "w") as f:
            f.write(text)
        lab.start(w)


# On the balancer, someone else's table counting what arrives from the VIP:
# in direct routing the servers' answers never pass through the balancer.
PROBE = f"""add table netdev probe
add chain netdev probe c {{ type filter hook ingress device eth0 priority -500; }}
add rule netdev probe c ip saddr {VIP} counter
"""


def probe_count(lab):
    m = re.search(r"ip saddr [\d.]+ counter packets (\d+)", ruleset(lab))
    return int(m.group(1)) if m else None


def test_dr_round_robin_servers_answer_directly_and_flows_survive_reload():
    with Lab("l4d", lbs=1, backends=3) as lab:
        start_dr_backends(lab)
        lab.exec("lb1", "nft", "-f", "-", input=PROBE)
        lab.run_halo("lb1", vrrp_toml(150) + l4_toml('forward = "dr"\ninterface = "eth0"'))
        try:
            wait_for(lambda: lab.holders(["lb1"], VIP) == ["lb1"], T, "lb1 to hold the VIP")
            # The MACs come from lb1's neighbour table (the health checks fill it).
            wait_for(lambda: in_map(lab) == ["web1", "web2", "web3"], T, "three servers in the map")
            wait_for(lambda: get(lab) is not None, T, "a page through the VIP")
            got = answers(lab, 9)
            assert sorted(got.count(w) for w in ("web1", "web2", "web3")) == [3, 3, 3], got
            rs = ruleset(lab)
            assert "table netdev halo_l4" in rs and "fwd to \"eth0\"" in rs, rs
            assert "table inet halo_l4" not in rs
            # The servers saw the client itself, and answered it directly.
            assert "192.0.2.2 " in lab.log("web1", "access")
            assert probe_count(lab) == 0, rs

            # An established flow, kept open across a reload that changes the
            # scheduling (wrr, weights 1:2:2): its packets still all go to its
            # server (per-packet numgen alone would scatter them and break it).
            conn = lab.spawn("conn", "client", ["python3", "-c", KEEPALIVE_CLIENT, VIP, lab.path("client", "go")])
            wait_for(lambda: "first" in lab.log("conn"), T, "the first answer on the kept connection")
            kept = re.search(r"first (web\d)", lab.log("conn")).group(1)
            others = [w for w in ("web1", "web2", "web3") if w != kept]
            servers = [f'{{ name = "{w}", address = "{WEB[w]}:80", weight = {1 if w == kept else 2} }}'
                       for w in ("web1", "web2", "web3")]
            lab.write("lb1", "halo.toml",
                      vrrp_toml(150) + l4_toml('forward = "dr"\ninterface = "eth0"\nscheduler = "wrr"', servers))
            lab.reload("lb1")
            wait_for(lambda: "numgen inc mod 5" in ruleset(lab), T, "the reloaded map")
            open(lab.path("client", "go"), "w").close()
            assert conn.wait(timeout=T) == 0, lab.log("conn")
            assert f"second {kept}" in lab.log("conn"), lab.log("conn")
            got = answers(lab, 5)
            assert sorted(got.count(w) for w in ("web1", "web2", "web3")) == [1, 2, 2], got

            # A stopped backend leaves the map.
            lab.kill(others[0])
            wait_for(lambda: others[0] not in in_map(lab), T, f"{others[0]} out of the map")
            assert others[0] not in answers(lab, 4)
            assert probe_count(lab) == 0

            lab.stop("lb1")
            rs = ruleset(lab)
            assert "halo_l4" not in rs and "table netdev probe" in rs, rs
        except AssertionError:
            print(lab.log("lb1"))
            raise


def test_track_l4_moves_the_vip_and_the_backup_already_balances():
    """Both LBs program the table (a takeover needs no reprogramming); lb1
    tracks its l4 service: with no healthy server its priority drops below
    lb2's and the VIP moves."""
    with Lab("l4t", lbs=2, backends=2) as lab:
        for lb in ("lb1", "lb2"):
            # LVS-NAT forwards (see start_nat).
            lab.exec(lb, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for w in ("web1", "web2"):
            lab.start(w)
        servers = [f'{{ name = "{w}", address = "{WEB[w]}:80" }}' for w in ("web1", "web2")]
        lab.run_halo("lb1", vrrp_toml(150, extra='track = [{ l4 = "web", weight = -60 }]') + l4_toml(servers=servers))
        lab.run_halo("lb2", vrrp_toml(100) + l4_toml(servers=servers))
        try:
            wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 master")
            wait_for(lambda: get(lab) is not None, T, "a page through lb1")
            assert "table inet halo_l4" in ruleset(lab, "lb2")

            # lb1 stops: lb2 takes the VIP and balances at once.
            lab.stop("lb1")
            wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb2"], T, "lb2 to take the VIP")
            wait_for(lambda: get(lab) is not None, T, "a page through lb2")
            assert set(answers(lab, 4)) == {"web1", "web2"}

            # lb1 back, then no healthy server: 150 - 60 = 90 < 100.
            lab.start("lb1")
            wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 master again")
            mark = lab.log_mark("lb1")
            lab.kill("web1")
            lab.kill("web2")
            wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb2"], T, "lb2 to take the VIP")
            assert "90 = 150 - 60 (track l4 web: no healthy server)" in lab.log("lb1", since=mark)
            lab.start("web1")
            wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 back when web1 is")
            wait_for(lambda: get(lab) == "web1", T, "pages from web1")
        except AssertionError:
            print(lab.log("lb1"))
            raise


def test_lab_up_l4_dr_balances_the_whole_lab():
    """`halo lab up --l4 dr`, as a student runs it: it returns once one LB
    holds the VIP and the client reaches every backend through it."""
    import shutil
    import subprocess
    import tempfile

    from localfix import halo_bin

    name = f"l4u{os.getpid() % 100000:05d}"
    d = tempfile.mkdtemp(prefix=f"halo-lab-{name}-")
    lab = [halo_bin(), "lab"]
    where = ["--name", name, "--dir", d]
    try:
        r = subprocess.run(lab + ["up", "--l4", "dr", "--lbs", "2", "--backends", "3"] + where,
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
        r = subprocess.run(lab + ["curl", "9"] + where, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        for w in ("web1", "web2", "web3"):
            assert w in r.stdout, r.stdout
        rs = subprocess.run(lab + ["exec", "lb1"] + where + ["--", "nft", "list", "table", "netdev", "halo_l4"],
                            capture_output=True, text=True, timeout=30).stdout
        assert 'fwd to "eth0"' in rs, rs
    finally:
        subprocess.run(lab + ["down"] + where, capture_output=True, timeout=120)
        shutil.rmtree(d, ignore_errors=True)


# Each datagram to VIP:53 from a new socket: the answering backend's name.
UDP_CLIENT = r"""
import socket, sys
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # Generous: a loaded machine may be slow to answer (a lost answer
    # would count as "timeout" and spoil the 2/2/2 split).
    s.settimeout(10)
    s.sendto(b"who", (sys.argv[1], 53))
    try:
        print(s.recv(100).decode().strip(), flush=True)
    except socket.timeout:
        print("timeout", flush=True)
    s.close()
"""


def test_udp_nat_round_robin():
    """UDP through NAT: real nginx (its stream module) answers each datagram
    with its name on port 5353; the service is VIP:53, so NAT also maps the
    port. No health table: UDP servers count as up."""
    with Lab("l4u", lbs=1, backends=3) as lab:
        for w in ("web1", "web2", "web3"):
            conf = lab.path(w, "nginx.conf")
            with open(conf) as f:
                text = f.read()
            text = "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n" + text
            text += f'stream {{\n  server {{\n    listen {WEB[w]}:5353 udp;\n    return "{w}\\n";\n  }}\n}}\n'
            with open(conf, "w") as f:
                f.write(text)
        servers = [f'{{ name = "{w}", address = "{WEB[w]}:5353" }}' for w in ("web1", "web2", "web3")]
        conf = l4_toml('protocol = "udp"', servers, health=False).replace("port = 80", "port = 53")
        start_nat(lab, conf)
        try:
            def ask(n):
                r = lab.exec("client", "python3", "-c", UDP_CLIENT, VIP, n, timeout=60)
                return r.stdout.split()
            # Every backend's nginx answers (its UDP listener may come up
            # after the first one's): three in a row through the map.
            wait_for(lambda: all(a.startswith("web") for a in ask(3)), T,
                     "answers from every backend through the VIP")
            # Six more go round the map twice, wherever the counter stands.
            got = ask(6)
            assert sorted(got.count(w) for w in ("web1", "web2", "web3")) == [2, 2, 2], got
            assert "udp dport 53" in ruleset(lab)
        except AssertionError:
            print(lab.log("lb1"))
            raise


def test_status_page_shows_l4_servers():
    """The [admin] page in headless Debian chromium (as tests/admin does):
    each l4 server's health and whether it is in the map."""
    import shutil
    import subprocess
    import tempfile

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian package chromium is not installed")
    with Lab("l4s", lbs=1, backends=2) as lab:
        servers = [f'{{ name = "{w}", address = "{WEB[w]}:80" }}' for w in ("web1", "web2")]
        start_nat(lab, l4_toml(servers=servers) + '\n[admin]\nbind = ["127.0.0.1:8404"]\n')
        lab.kill("web2")
        wait_for(lambda: in_map(lab) == ["web1"], T, "web2 out of the map")
        prof = tempfile.mkdtemp(prefix="halo-l4-chromium-")
        try:
            r = subprocess.run(
                ["ip", "netns", "exec", lab.ns("lb1"), chromium, "--headless", "--no-sandbox",
                 "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", f"--user-data-dir={prof}",
                 "--virtual-time-budget=3000", "--dump-dom", "http://127.0.0.1:8404/"],
                capture_output=True, text=True, timeout=90, env=dict(os.environ, HOME=prof))
            assert r.returncode == 0, r.stderr[-2000:]
            rows = dict((s, (st, m)) for s, st, m in re.findall(
                r'data-l4-server="web/([^"]+)" data-state="([A-Z]+)" data-in-map="(\w+)"', r.stdout))
            assert rows == {"web1": ("UP", "yes"), "web2": ("DOWN", "no")}, r.stdout[-3000:]
        finally:
            shutil.rmtree(prof, ignore_errors=True)


def test_ipv6_nat_round_robin():
    """An IPv6 service (the lab's --ipv6 addresses): dnat ip6, masquerade."""
    vip6 = "2001:db8::100"
    with Lab("l4six", lbs=1, backends=2, ipv6=True) as lab:
        for n, w in enumerate(("web1", "web2"), start=1):
            conf = lab.path(w, "nginx.conf")
            with open(conf) as f:
                text = f.read()
            text = text.replace(f"listen {WEB[w]}:80;", f"listen {WEB[w]}:80;\n    listen [2001:db8::2{n}]:80;")
            with open(conf, "w") as f:
                f.write(text)
            lab.start(w)
        # LVS-NAT forwards (see start_nat); the VIP is set by hand, as VRRP
        # is not what this test is about (nodad: usable at once).
        lab.exec("lb1", "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        lab.exec("lb1", "ip", "-6", "addr", "add", f"{vip6}/64", "dev", "eth0", "nodad")
        lab.run_halo("lb1", f"""
[l4.web]
address = "{vip6}"
port = 80
servers = [
  {{ name = "web1", address = "[2001:db8::21]:80" }},
  {{ name = "web2", address = "[2001:db8::22]:80" }},
]

[l4.web.health]
path = "/health"
interval = "300ms"
timeout = "200ms"
""")
        try:
            def get6():
                r = lab.exec("client", "curl", "-s", "-m", "3", "-g", f"http://[{vip6}]/", check=False)
                m = re.match(r"(web\d): hello", r.stdout)
                return m.group(1) if m else None
            # Both servers in the map first: a first probe that meets a
            # neighbour solicitation on a loaded machine can time out and
            # start web1 DOWN until it rises.
            wait_for(lambda: {get6() for _ in range(4)} == {"web1", "web2"}, T,
                     "pages from both servers through the IPv6 VIP")
            got = [get6() for _ in range(4)]
            assert sorted(got) == ["web1", "web1", "web2", "web2"], got
            assert "dnat ip6 to [2001:db8::21]:80" in ruleset(lab)
        except AssertionError:
            print(lab.log("lb1"))
            raise
