"""Per-card VRRP priorities from node.toml (the image's first boot): the
node.toml parser's dotted `priority.NAME` keys and priority.awk, which
rewrites the cluster's shared halo.toml for one card. Active-active: three
instances, each card master of a different one. No image needed: both are
run as firstboot runs them, and the result goes through `halo check`."""

import re
import subprocess

import pytest

from conftest import NODE_PARSER, ROOT

REWRITE = ROOT / "image" / "overlay" / "usr" / "lib" / "halo-image" / "priority.awk"

# The shared halo.toml of a 3-LB, 3-VIP cluster; VI_3 has no priority line.
SHARED = """\
[global]
log_level = "info"

[vrrp.VI_1]
interface = "eth0"
vrid = 51
priority = 100   # each card's node.toml replaces this
virtual_ips = ["192.0.2.100/24"]

[vrrp.VI_2]
interface = "eth0"
vrid = 52
  priority=100
virtual_ips = ["192.0.2.101/24"]

[vrrp.VI_3]  # no priority: node.toml's is added
interface = "eth0"
vrid = 53
virtual_ips = ["192.0.2.102/24"]

[proxy.web]
bind = ["0.0.0.0:80"]
servers = [{ name = "web1", address = "192.0.2.21:80" }]
"""


def parse(text, tmp_path):
    p = tmp_path / "node.toml"
    p.write_text(text)
    return subprocess.run(["awk", "-f", str(NODE_PARSER), str(p)], capture_output=True, text=True)


def rewrite(tmp_path, prio="", per="", conf=SHARED):
    src = tmp_path / "shared.toml"
    src.write_text(conf)
    return subprocess.run(["awk", "-v", f"prio={prio}", "-v", f"per={per}", "-f", str(REWRITE), str(src)],
                          capture_output=True, text=True)


def priorities(text):
    """{instance: [priority lines' values]} of a halo.toml."""
    out, name = {}, None
    for line in text.splitlines():
        m = re.match(r"\s*\[vrrp\.([^\]]+)\]", line)
        if m:
            name = m.group(1)
            out[name] = []
        elif line.lstrip().startswith("["):
            name = None
        elif name and re.match(r"\s*priority\s*=", line):
            out[name].append(line.split("=", 1)[1].split("#")[0].strip())
    return out


def checked(tmp_path, halo_bin, text):
    p = tmp_path / "halo.toml"
    p.write_text(text)
    r = subprocess.run([str(halo_bin), "check", "--config", str(p)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_parser_reads_per_instance_priorities(tmp_path):
    r = parse('hostname = "lb2"\npriority.VI_1 = 100\npriority.VI_2 = 110  # master\npriority.VI_3 = 90\n',
              tmp_path)
    assert r.returncode == 0, r.stderr
    assert [tuple(x.split("\t")) for x in r.stdout.splitlines()] == [
        ("hostname", "lb2"), ("priority.VI_1", "100"), ("priority.VI_2", "110"), ("priority.VI_3", "90"),
    ]


@pytest.mark.parametrize("text,message", [
    ("priority = 100\npriority.VI_1 = 110\n", "'priority' is both a value and a table"),
    ("priority.VI_1 = 110\npriority = 100\n", "'priority' is both a value and a table"),
    ("priority.VI_1 = 110\npriority.VI_1 = 100\n", "duplicate key 'priority.VI_1'"),
    ("priority.a.b = 1\n", "expected '=' after 'priority.a'"),
])
def test_parser_refuses_what_toml_refuses(tmp_path, text, message):
    r = parse(text, tmp_path)
    assert r.returncode == 1
    assert message in r.stderr and "node.toml:" in r.stderr, r.stderr


def test_one_priority_still_sets_every_instance(tmp_path, halo_bin):
    r = rewrite(tmp_path, prio="150")
    assert r.returncode == 0, r.stderr
    assert priorities(r.stdout) == {"VI_1": ["150"], "VI_2": ["150"], "VI_3": ["150"]}
    checked(tmp_path, halo_bin, r.stdout)


def test_each_card_gets_its_own_order(tmp_path, halo_bin):
    # lb1, lb2, lb3 of the cluster: VIP i mastered by lb i, the others in turn.
    cards = {
        "lb1": "VI_1=110 VI_2=90 VI_3=100",
        "lb2": "VI_1=100 VI_2=110 VI_3=90",
        "lb3": "VI_1=90 VI_2=100 VI_3=110",
    }
    got = {}
    for card, per in cards.items():
        r = rewrite(tmp_path, per=per)
        assert r.returncode == 0, r.stderr
        checked(tmp_path, halo_bin, r.stdout)
        got[card] = priorities(r.stdout)
    for i in ("VI_1", "VI_2", "VI_3"):
        master = max(got, key=lambda c: int(got[c][i][0]))
        assert master == f"lb{i[-1]}", (i, got)
        assert len({got[c][i][0] for c in got}) == 3, "no two cards tie in an instance"
    # The rest of the file is untouched.
    r = rewrite(tmp_path, per=cards["lb2"])
    assert [l for l in r.stdout.splitlines() if "priority" not in l] == \
        [l for l in SHARED.splitlines() if "priority" not in l]


def test_named_instances_override_the_single_priority(tmp_path):
    r = rewrite(tmp_path, prio="50", per="VI_2=120")
    assert r.returncode == 0, r.stderr
    assert priorities(r.stdout) == {"VI_1": ["50"], "VI_2": ["120"], "VI_3": ["50"]}
    # Only named ones: the others keep halo.toml's (VI_3 has none, stays so).
    r = rewrite(tmp_path, per="VI_3=120")
    assert priorities(r.stdout) == {"VI_1": ["100"], "VI_2": ["100"], "VI_3": ["120"]}


def test_a_name_halo_toml_does_not_have_is_an_error(tmp_path):
    r = rewrite(tmp_path, per="VI_1=110 VI_9=100")
    assert r.returncode == 2
    assert "priority.VI_9: halo.toml has no [vrrp.VI_9]" in r.stderr
