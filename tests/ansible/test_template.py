"""The halo role's halo.toml template, rendered by real Ansible (the
`template` module, on this machine, no hosts needed) for every LB of an
inventory and checked with `halo check`: the classic pair (one instance) and
active-active (`halo_vips`: one instance per VIP, each mastered by a
different LB, the others backing it up in turn)."""

import json
import os
import re
import subprocess

import pytest

from cluster import ANSIBLE_DIR
from localfix import halo_bin

INVENTORY = """\
[lbs]
lb1 ansible_host=192.0.2.11
lb2 ansible_host=192.0.2.12
lb3 ansible_host=192.0.2.13

[webs]
web1 ansible_host=192.0.2.21
web2 ansible_host=192.0.2.22
"""

# A role of the test's whose defaults are the halo role's own file (so they
# have a role default's precedence: host_vars override them) and whose one
# task renders the halo role's template.
PLAY = """\
- name: Render the halo role's halo.toml for every LB, here
  hosts: lbs
  connection: local
  gather_facts: false
  roles:
    - render
"""
TASK = """\
- name: Render
  ansible.builtin.template:
    src: {role}/templates/halo.toml.j2
    dest: "{out}/{{{{ inventory_hostname }}}}.toml"
    mode: "0644"
"""

VIPS = [{"name": f"VI_{i}", "vrid": 50 + i, "vip": f"192.0.2.{99 + i}"} for i in (1, 2, 3)]


def render(tmp_path, extra=None, host_vars=None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    """{host: halo.toml text} as the role writes it."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    (tmp_path / "hosts.ini").write_text(INVENTORY)
    for host, v in (host_vars or {}).items():
        (tmp_path / "host_vars").mkdir(exist_ok=True)
        (tmp_path / "host_vars" / f"{host}.yml").write_text(json.dumps(v))
    role = os.path.join(ANSIBLE_DIR, "roles", "halo")
    (tmp_path / "play.yml").write_text(PLAY)
    test_role = tmp_path / "roles" / "render"
    for d in ("tasks", "defaults"):
        (test_role / d).mkdir(parents=True, exist_ok=True)
    (test_role / "tasks" / "main.yml").write_text(TASK.format(role=role, out=out))
    defaults = test_role / "defaults" / "main.yml"
    if not defaults.exists():
        defaults.symlink_to(os.path.join(role, "defaults", "main.yml"))
    cmd = ["ansible-playbook", "-i", str(tmp_path / "hosts.ini"), str(tmp_path / "play.yml")]
    if extra:
        cmd += ["-e", json.dumps(extra)]
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ANSIBLE_DIR, "ansible.cfg"), NO_COLOR="1",
               ANSIBLE_HOME=str(tmp_path / "ansible-home"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               ANSIBLE_ROLES_PATH=str(tmp_path / "roles"))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    texts = {h: (out / f"{h}.toml").read_text() for h in ("lb1", "lb2", "lb3")}
    for h, text in texts.items():
        p = tmp_path / f"check-{h}.toml"
        p.write_text(text)
        c = subprocess.run([halo_bin(), "check", "--config", str(p)], capture_output=True, text=True)
        assert c.returncode == 0, f"{h}:\n{text}\n{c.stdout}{c.stderr}"
    return texts


def instances(text):
    """{name: (vrid, priority, vip)} of a rendered halo.toml."""
    out = {}
    for block in re.split(r"^\[", text, flags=re.M):
        m = re.match(r"vrrp\.(\w+)\]", block)
        if m:
            get = lambda k: re.search(rf"^{k} = (.*)$", block, re.M).group(1)  # noqa: E731
            out[m.group(1)] = (int(get("vrid")), int(get("priority")), get("virtual_ips"))
    return out


@pytest.fixture(autouse=True)
def _ansible():
    if subprocess.run(["which", "ansible-playbook"], capture_output=True).returncode != 0:
        pytest.fail("ansible-playbook missing (tests/ansible/apt-packages.txt)")


def test_default_is_one_instance_in_inventory_order(tmp_path):
    got = {h: instances(t) for h, t in render(tmp_path).items()}
    assert got == {
        "lb1": {"VI_1": (51, 150, '["192.0.2.100/24"]')},
        "lb2": {"VI_1": (51, 140, '["192.0.2.100/24"]')},
        "lb3": {"VI_1": (51, 130, '["192.0.2.100/24"]')},
    }


def test_active_active_gives_each_vip_a_different_master_and_order(tmp_path):
    got = {h: instances(t) for h, t in render(tmp_path, {"halo_vips": VIPS}).items()}
    prio = {h: {n: v[1] for n, v in inst.items()} for h, inst in got.items()}
    assert prio == {
        "lb1": {"VI_1": 150, "VI_2": 130, "VI_3": 140},
        "lb2": {"VI_1": 140, "VI_2": 150, "VI_3": 130},
        "lb3": {"VI_1": 130, "VI_2": 140, "VI_3": 150},
    }
    for h in got:
        assert [(n, v[0], v[2]) for n, v in got[h].items()] == [
            ("VI_1", 51, '["192.0.2.100/24"]'),
            ("VI_2", 52, '["192.0.2.101/24"]'),
            ("VI_3", 53, '["192.0.2.102/24"]'),
        ]


def test_more_vips_than_lbs_spread_a_dead_lbs_vips(tmp_path):
    six = [{"name": f"VI_{i}", "vrid": 50 + i, "vip": f"192.0.2.{99 + i}"} for i in range(1, 7)]
    got = {h: {n: v[1] for n, v in instances(t).items()} for h, t in render(tmp_path, {"halo_vips": six}).items()}
    order = {n: sorted(got, key=lambda h: -got[h][n]) for n in got["lb1"]}
    assert order["VI_1"] == ["lb1", "lb2", "lb3"] and order["VI_4"] == ["lb1", "lb3", "lb2"], order
    for dead in got:
        mine = [n for n, o in order.items() if o[0] == dead]
        assert len(mine) == 2, (dead, order)
        # Its two VIPs go to the two survivors, one each.
        assert sorted(order[n][1] for n in mine) == sorted(h for h in got if h != dead), (dead, order)
    for n, o in order.items():
        assert len({got[h][n] for h in got}) == 3, f"{n}: no tie"


def test_a_host_can_set_its_own_priorities(tmp_path):
    texts = render(tmp_path, {"halo_vips": VIPS}, host_vars={"lb3": {"halo_priorities": {"VI_1": 145}}})
    assert instances(texts["lb3"])["VI_1"][1] == 145
    assert instances(texts["lb3"])["VI_2"][1] == 140


def test_l4_forward_writes_a_kernel_service_over_the_webs_instead_of_the_proxy(tmp_path):
    """halo_l4_forward: the same webs in an [l4] service on the VIP (checked
    by `halo check` in render), tracked instead of the proxy."""
    for forward, addrs in (("dr", ["192.0.2.21", "192.0.2.22"]), ("nat", ["192.0.2.21:80", "192.0.2.22:80"])):
        texts = render(tmp_path / forward, {"halo_l4_forward": forward})
        for h, text in texts.items():
            assert "[proxy." not in text, text
            assert re.search(r"^\[l4\.web\]\naddress = \"192\.0\.2\.100\"\nport = 80\nforward = \"%s\"$" % forward,
                             text, re.M), text
            assert ('interface = "eth0"' in text.split("[l4.web]")[1]) == (forward == "dr"), text
            assert re.findall(r'address = "(192\.0\.2\.2\d[:\d]*)"', text) == addrs, text
            assert '{ l4 = "web", weight = -50 }' in text, text
            assert "[l4.web.health]" in text, text


FRR_TASK = """\
- name: Render
  ansible.builtin.template:
    src: {role}/templates/frr.conf.j2
    dest: "{out}/{{{{ inventory_hostname }}}}.frr.conf"
    mode: "0644"
"""


def render_frr(tmp_path, extra):
    """{host: frr.conf text} as the frr role writes it (its defaults, and
    the halo role's for halo_anycast_address)."""
    out = tmp_path / "frr-out"
    out.mkdir(exist_ok=True)
    (tmp_path / "hosts.ini").write_text(INVENTORY)
    role = os.path.join(ANSIBLE_DIR, "roles", "frr")
    (tmp_path / "play.yml").write_text(PLAY)
    test_role = tmp_path / "roles" / "render"
    for d in ("tasks", "defaults"):
        (test_role / d).mkdir(parents=True, exist_ok=True)
    (test_role / "tasks" / "main.yml").write_text(FRR_TASK.format(role=role, out=out))
    defaults = test_role / "defaults" / "main.yml"
    if not defaults.exists():
        defaults.symlink_to(os.path.join(role, "defaults", "main.yml"))
    cmd = ["ansible-playbook", "-i", str(tmp_path / "hosts.ini"), str(tmp_path / "play.yml"),
           "-e", json.dumps(extra)]
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ANSIBLE_DIR, "ansible.cfg"), NO_COLOR="1",
               ANSIBLE_HOME=str(tmp_path / "ansible-home"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               ANSIBLE_ROLES_PATH=str(tmp_path / "roles"))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return {h: (out / f"{h}.frr.conf").read_text() for h in ("lb1", "lb2", "lb3")}


def test_bgp_replaces_vrrp_with_an_anycast_address(tmp_path):
    texts = render(tmp_path, {"halo_bgp": True, "halo_anycast_address": "203.0.113.20"})
    for h, text in texts.items():
        assert instances(text) == {}, h
        assert '[anycast.web]\naddress = "203.0.113.20/32"\ntrack = [{ proxy = "web" }]\n' in text, text


def test_frr_announces_only_the_anycast_address_with_bfd(tmp_path):
    extra = {"frr_neighbors": [{"address": "192.0.2.1", "asn": 65000}],
             "halo_anycast_address": "203.0.113.20"}
    texts = render_frr(tmp_path, extra)
    for h, text in texts.items():
        n = h[-1]
        assert f"router bgp 65001\n bgp router-id 192.0.2.1{n}\n" in text, text
        assert " neighbor 192.0.2.1 remote-as 65000\n" in text, text
        assert " neighbor 192.0.2.1 bfd profile halo\n" in text, text
        assert "  redistribute connected route-map HALO-ANYCAST\n" in text, text
        assert "  neighbor 192.0.2.1 route-map HALO-ANYCAST out\n" in text, text
        assert "ip prefix-list HALO-ANYCAST seq 5 permit 203.0.113.20/32\n" in text, text
        assert "  detect-multiplier 3\n" in text, text
        # FRR itself accepts it (vtysh's dry run: the role's `validate`).
        p = tmp_path / f"{h}.frr.conf"
        p.write_text(text)
        c = subprocess.run(["vtysh", "-C", "-f", str(p)], capture_output=True, text=True)
        assert c.returncode == 0, f"{h}:\n{text}\n{c.stdout}{c.stderr}"
    off = render_frr(tmp_path, {**extra, "frr_bfd": False})
    assert "bfd profile" not in off["lb1"] and "\nbfd\n" not in off["lb1"], off["lb1"]
