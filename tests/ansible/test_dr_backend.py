"""The nginx_backend role's direct-routing files (nginx_backend_dr: true):
/etc/sysctl.d/60-halo-dr.conf and halo-dr-vip.service, rendered by real
Ansible (the `template` module, on this machine, no hosts needed), then
applied the way the boot applies them (`sysctl -p` the file, run the unit's
ExecStart lines) to the backends of a `halo lab`, whose LB runs the halo
role's halo.toml with `halo_l4_forward: dr` (an `[l4]` DR service): both
backends answer through the VIP and only the LB answers ARP for the VIP
(the backends never claim it).

The lab is made without `--l4 dr` (which would set the backends up
itself): here only the role's files do. The full role on real hosts is
tests/ansible/test_cluster.py's business (systemd containers, minutes);
this covers what the files do to a kernel in seconds.
"""

import json
import os
import re
import subprocess

import pytest

from cluster import ANSIBLE_DIR
from halolab import CLIENT, VIP, WEB, Lab, wait_for
from test_template import render as render_halo

ROLE = os.path.join(ANSIBLE_DIR, "roles", "nginx_backend")
T = 60

PLAY = """\
- name: Render the nginx_backend role's direct-routing files, here
  hosts: webs
  connection: local
  gather_facts: false
  roles:
    - render
"""
TASK = """\
- name: Render {name}
  ansible.builtin.template:
    src: {role}/templates/{name}.j2
    dest: "{out}/{{{{ inventory_hostname }}}}.{name}"
    mode: "0644"
"""
FILES = ("halo-dr.sysctl.conf", "halo-dr-vip.service")


def render(tmp_path, extra):
    """{file name: text} for web1, as the role writes them."""
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "hosts.ini").write_text("[webs]\nweb1 ansible_host=192.0.2.21\n")
    (tmp_path / "play.yml").write_text(PLAY)
    role = tmp_path / "roles" / "render"
    for d in ("tasks", "defaults"):
        (role / d).mkdir(parents=True)
    (role / "tasks" / "main.yml").write_text("---\n" + "\n".join(TASK.format(name=n, role=ROLE, out=out) for n in FILES))
    (role / "defaults" / "main.yml").symlink_to(os.path.join(ROLE, "defaults", "main.yml"))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ANSIBLE_DIR, "ansible.cfg"), NO_COLOR="1",
               ANSIBLE_HOME=str(tmp_path / "ansible-home"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               ANSIBLE_ROLES_PATH=str(tmp_path / "roles"))
    r = subprocess.run(["ansible-playbook", "-i", str(tmp_path / "hosts.ini"), str(tmp_path / "play.yml"),
                        "-e", json.dumps(extra)], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return {n: (out / f"web1.{n}").read_text() for n in FILES}


# Who answers ARP for an address: one broadcast request from the client's
# eth0, then every reply's sender MAC for 2 s (raw AF_PACKET socket; the
# lab has no arping).
WHO_HAS = r"""
import socket, struct, sys, time
ip = socket.inet_aton(sys.argv[1])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind(("eth0", 0))
mac = s.getsockname()[4]
src = socket.inet_aton(sys.argv[2])
arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, src, b"\0" * 6, ip)
s.send(b"\xff" * 6 + mac + b"\x08\x06" + arp)
s.settimeout(0.2)
seen = set()
end = time.monotonic() + 2
while time.monotonic() < end:
    try:
        f = s.recv(100)
    except socket.timeout:
        continue
    if f[20:22] == b"\x00\x02" and f[28:32] == ip:
        seen.add(f[22:28].hex(":"))
print(" ".join(sorted(seen)))
"""


def lines_of(unit, key):
    return [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(key + "=")]


def test_rendered_files_hold_every_vip_and_both_sysctls(tmp_path):
    files = render(tmp_path, {"nginx_backend_dr": True, "nginx_backend_dr_vips": [VIP, "2001:db8::100"]})
    sysctls = dict(re.findall(r"^(\S+) = (\S+)$", files["halo-dr.sysctl.conf"], re.M))
    assert sysctls == {"net.ipv4.conf.all.arp_ignore": "1", "net.ipv4.conf.all.arp_announce": "2"}
    unit = files["halo-dr-vip.service"]
    assert lines_of(unit, "ExecStart") == [f"/sbin/ip addr replace {VIP}/32 dev lo",
                                           "/sbin/ip addr replace 2001:db8::100/128 dev lo"]
    assert lines_of(unit, "ExecStop") == [f"-/sbin/ip addr del {VIP}/32 dev lo",
                                          "-/sbin/ip addr del 2001:db8::100/128 dev lo"]
    assert lines_of(unit, "WantedBy") == ["multi-user.target"]
    assert lines_of(unit, "RemainAfterExit") == ["yes"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")
def test_rendered_files_make_the_lab_backends_direct_routing_servers(tmp_path):
    files = render(tmp_path, {"nginx_backend_dr": True, "nginx_backend_dr_vips": [VIP]})
    halo_toml = render_halo(tmp_path / "halo", {"halo_l4_forward": "dr"})
    sysctl = tmp_path / "60-halo-dr.conf"
    sysctl.write_text(files["halo-dr.sysctl.conf"])
    with Lab("drb", lbs=1, backends=2) as lab:
        for w in ("web1", "web2"):
            # As the boot does: systemd-sysctl, then the unit.
            lab.exec(w, "sysctl", "-q", "-p", str(sysctl))
            for cmd in lines_of(files["halo-dr-vip.service"], "ExecStart"):
                lab.exec(w, *cmd.split())
            # The role's site listens on every address (listen 80); the
            # lab's nginx on the backend's own: add the VIP.
            conf = lab.path(w, "nginx.conf")
            with open(conf) as f:
                text = f.read()
            with open(conf, "w") as f:
                f.write(text.replace(f"listen {WEB[w]}:80;", f"listen {WEB[w]}:80;\n    listen {VIP}:80;"))
            lab.start(w)
        # lb1 runs what the halo role writes with halo_l4_forward: dr.
        lab.run_halo("lb1", halo_toml["lb1"])
        try:
            wait_for(lambda: lab.holders(["lb1"], VIP) == ["lb1"], T, "lb1 to hold the VIP")

            def in_map():
                s = lab.status("lb1")
                return s and s.get("l4") and sorted(v["name"] for v in s["l4"][0]["servers"] if v["in_map"])

            wait_for(lambda: in_map() == ["web1", "web2"], T, "both backends in the map")

            def get():
                r = lab.exec("client", "curl", "-s", "-m", "3", f"http://{VIP}/", check=False)
                m = re.match(r"(web\d): hello", r.stdout)
                return m.group(1) if m else None

            wait_for(get, T, "a page through the VIP")
            got = [get() for _ in range(4)]
            assert sorted(got) == ["web1", "web1", "web2", "web2"], got
            # Only the LB answers ARP for the VIP: the backends hold it on
            # lo but never claim it (without the sysctls both would answer).
            who = lab.exec("client", "python3", "-c", WHO_HAS, VIP, CLIENT).stdout.split()
            assert who == [lab.mac("lb1")], (who, {n: lab.mac(n) for n in ("lb1", "web1", "web2")})
        except (AssertionError, RuntimeError):
            print(lab.log("lb1"))
            raise
