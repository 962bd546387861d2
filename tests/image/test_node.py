"""`image/halo-image node`: per-card settings written onto a FAT boot
partition in an image file without mounting, read back with mtools and with
the card's own node.toml parser; bad input is refused with a clear error and
the card is left untouched."""

import subprocess

import pytest

from conftest import HALO_IMAGE_TOOL, NODE_PARSER, Disk, run

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHaloTestKeyHaloTestKeyHaloTestKey00 admin@laptop"

HALO_TOML = """\
[vrrp.VI_1]
interface = "eth0"
vrid = 51
priority = 100
virtual_ips = ["192.0.2.100/24"]

[proxy.web]
bind = ["0.0.0.0:80"]
servers = [{ name = "web1", address = "192.0.2.21:80" }]
"""


@pytest.fixture
def card(tmp_path):
    """A 48 MiB 'card': MBR, FAT32 partition 1 at 1 MiB, like the image's."""
    img = tmp_path / "card.img"
    with open(img, "wb") as f:
        f.truncate(48 * 1024 * 1024)
    run(["sfdisk", "--quiet", str(img)], input="label: dos\nstart=2048, type=c, bootable\n")
    disk = Disk(img)
    run(["mkfs.vfat", "-F", "32", "--offset", str(disk.offset(1) // 512), "-n", "RASPIFIRM", str(img)])
    return img


def node(*args):
    return subprocess.run([str(HALO_IMAGE_TOOL), "node", *map(str, args)], capture_output=True, text=True)


def parse(text, tmp_path):
    p = tmp_path / "node.toml"
    p.write_text(text)
    r = subprocess.run(["awk", "-f", str(NODE_PARSER), str(p)], capture_output=True, text=True)
    return r


def parsed_pairs(text, tmp_path):
    r = parse(text, tmp_path)
    assert r.returncode == 0, r.stderr
    return [tuple(line.split("\t", 1)) for line in r.stdout.splitlines()]


def test_node_writes_node_toml_and_halo_toml(card, tmp_path):
    conf = tmp_path / "halo.toml"
    conf.write_text(HALO_TOML)
    pub = tmp_path / "id.pub"
    pub.write_text(KEY + "\n")
    r = node(
        "--hostname", "lb1", "--address", "192.0.2.11/24", "--gateway", "192.0.2.1",
        "--dns", "192.0.2.53", "--priority", "101", "--ssh-key", pub,
        "--ssh-key", "ssh-rsa AAAAB3Nza second@key", "--halo-toml", conf, card,
    )
    assert r.returncode == 0, r.stderr
    disk = Disk(card)
    assert disk.fat_ls("::/halo") == ["halo.toml", "node.toml"]
    assert disk.fat_read("::/halo/halo.toml") == HALO_TOML
    pairs = parsed_pairs(disk.fat_read("::/halo/node.toml"), tmp_path)
    assert pairs == [
        ("hostname", "lb1"),
        ("address", "192.0.2.11/24"),
        ("gateway", "192.0.2.1"),
        ("dns", "192.0.2.53"),
        ("priority", "101"),
        ("ssh_authorized_keys", KEY),
        ("ssh_authorized_keys", "ssh-rsa AAAAB3Nza second@key"),
    ]


def test_node_again_replaces_the_settings(card, tmp_path):
    assert node("--hostname", "lb1", "--ssh-key", KEY, card).returncode == 0
    r = node("--hostname", "lb2", "--address", "192.0.2.12/24", "--address", "2001:db8::12/64", "--ssh-key", KEY, card)
    assert r.returncode == 0, r.stderr
    pairs = parsed_pairs(Disk(card).fat_read("::/halo/node.toml"), tmp_path)
    assert ("hostname", "lb2") in pairs and ("hostname", "lb1") not in pairs
    assert [v for k, v in pairs if k == "address"] == ["192.0.2.12/24", "2001:db8::12/64"]
    # Without --halo-toml the tool says halo will not start yet.
    assert "no halo/halo.toml" in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hostname", "LB_1", "--ssh-key", KEY], "not a valid host name"),
        (["--hostname", "lb1"], "--ssh-key is required"),
        (["--hostname", "lb1", "--ssh-key", "hunter2"], "does not look like an SSH public key"),
        (["--hostname", "lb1", "--ssh-key", KEY, "--priority", "0"], "--priority must be 1..254"),
        (["--hostname", "lb1", "--ssh-key", KEY, "--priority", "255"], "--priority must be 1..254"),
        (["--hostname", "lb1", "--ssh-key", KEY, "--address", "192.0.2.11"], "must be ADDRESS/PREFIX"),
        (["--hostname", "lb1", "--ssh-key", KEY, "--address", "192.0.2.300/24"], "must be ADDRESS/PREFIX"),
        (["--hostname", "lb1", "--ssh-key", KEY, "--gateway", "gw"], "is not an IP address"),
        (["--hostname", "lb1", "--ssh-key", KEY, "--bogus"], "unknown option"),
        (["--hostname", "lb1", "--ssh-key", KEY, "--priority", "VI_1=0"], "the priority must be 1..254"),
        (["--hostname", "lb1", "--ssh-key", KEY, "--priority", "V.1=100"], "NAME must be"),
        (["--hostname", "lb1", "--ssh-key", KEY, "--priority", "VI_1=100", "--priority", "VI_1=90"],
         "--priority VI_1= given twice"),
        (["--hostname", "lb1", "--ssh-key", KEY, "--priority", "100", "--priority", "VI_1=90"],
         "one for every instance, or one per instance"),
    ],
)
def test_node_refuses_bad_input_and_writes_nothing(card, args, message):
    r = node(*args, card)
    assert r.returncode != 0
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert "halo" not in Disk(card).fat_ls("::/")


def test_node_writes_per_instance_priorities(card, tmp_path):
    """Active-active: one priority per VRRP instance (docs/scale.md)."""
    conf = tmp_path / "halo.toml"
    conf.write_text(HALO_TOML + HALO_TOML.split("\n\n")[0].replace("VI_1", "VI_2").replace("51", "52")
                    .replace("192.0.2.100", "192.0.2.101") + "\n")
    r = node("--hostname", "lb2", "--priority", "VI_1=100", "--priority", "VI_2=110", "--ssh-key", KEY,
             "--halo-toml", conf, card)
    assert r.returncode == 0, r.stderr
    pairs = parsed_pairs(Disk(card).fat_read("::/halo/node.toml"), tmp_path)
    assert [p for p in pairs if p[0].startswith("priority")] == [("priority.VI_1", "100"), ("priority.VI_2", "110")]
    # A name halo.toml has no instance for is refused before the card is touched.
    r = node("--hostname", "lb3", "--priority", "VI_9=90", "--ssh-key", KEY, "--halo-toml", conf, card)
    assert r.returncode != 0
    assert "priority.VI_9: halo.toml has no [vrrp.VI_9]" in r.stderr
    assert ("hostname", "lb2") in parsed_pairs(Disk(card).fat_read("::/halo/node.toml"), tmp_path)


def test_node_refuses_a_halo_toml_that_fails_halo_check(card, tmp_path, halo_bin):
    bad = tmp_path / "halo.toml"
    bad.write_text(HALO_TOML.replace("priority = 100", "priority = 300"))
    r = subprocess.run(
        [str(HALO_IMAGE_TOOL), "node", "--hostname", "lb1", "--ssh-key", KEY, "--halo-toml", str(bad), str(card)],
        capture_output=True, text=True, env={"HALO_BIN": str(halo_bin), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert r.returncode != 0
    assert "does not pass 'halo check'" in r.stderr
    assert "halo" not in Disk(card).fat_ls("::/")


def test_node_refuses_compressed_and_non_fat_targets(tmp_path, card):
    xz = tmp_path / "x.img.xz"
    xz.write_bytes(b"\xfd7zXZ\x00")
    r = node("--hostname", "lb1", "--ssh-key", KEY, xz)
    assert r.returncode != 0 and "is compressed" in r.stderr

    linux = tmp_path / "linux.img"
    with open(linux, "wb") as f:
        f.truncate(8 * 1024 * 1024)
    run(["sfdisk", "--quiet", str(linux)], input="label: dos\nstart=2048, type=83\n")
    r = node("--hostname", "lb1", "--ssh-key", KEY, linux)
    assert r.returncode != 0 and "not a FAT boot partition" in r.stderr

    r = node("--hostname", "lb1", "--ssh-key", KEY, tmp_path / "missing.img")
    assert r.returncode != 0 and "no such file" in r.stderr


@pytest.mark.parametrize(
    "text, message",
    [
        ('hostname = "lb1\n', "unterminated string"),
        ('hostname = "lb1" extra\n', "unexpected text after the value"),
        ("hostname = lb1\n", "unsupported value"),
        ('[node]\nhostname = "lb1"\n', "tables are not used"),
        ('hostname = "a"\nhostname = "b"\n', "duplicate key 'hostname'"),
        ('dns = ["192.0.2.1" "192.0.2.2"]\n', "missing ','"),
        ('dns = [\n "192.0.2.1",\n', "unterminated array 'dns'"),
        ('hostname = "a\\tb"\n', "escapes are supported"),
        ("= 1\n", "expected `key = value`"),
    ],
)
def test_card_parser_names_the_line_of_an_error(tmp_path, text, message):
    r = parse(text, tmp_path)
    assert r.returncode == 1
    assert message in r.stderr
    assert "node.toml:" in r.stderr


def test_card_parser_reads_comments_multiline_arrays_and_escapes(tmp_path):
    text = (
        "# a comment\n\n"
        'hostname = "lb1"   # trailing # comment\n'
        "ssh_authorized_keys = [\n"
        '  "ssh-ed25519 AAAA a#b",  # a key with a hash in its comment\n'
        '  "ssh-rsa BBBB \\"quoted\\"",\n'
        "]\n"
        "priority = 101\n"
        "dns = []\n"
    )
    assert parsed_pairs(text, tmp_path) == [
        ("hostname", "lb1"),
        ("ssh_authorized_keys", "ssh-ed25519 AAAA a#b"),
        ("ssh_authorized_keys", 'ssh-rsa BBBB "quoted"'),
        ("priority", "101"),
        ("dns", ""),
    ]


# === --cloud-init: cloud-init's NoCloud files, as Raspberry Pi Imager writes


def test_node_cloud_init_writes_nocloud_files(card, tmp_path):
    import yaml  # python3-yaml (tests/image/apt-packages.txt), as cloud-init reads them

    conf = tmp_path / "halo.toml"
    conf.write_text(HALO_TOML)
    hook = tmp_path / "hook.sh"
    hook.write_text("#!/bin/sh\necho hook\n")
    r = node(
        "--cloud-init", "--hostname", "lb1", "--interface", "usb0", "--address", "192.0.2.11/24",
        "--address", "2001:db8::11/64", "--gateway", "192.0.2.1", "--dns", "192.0.2.53", "--priority", "101",
        "--ssh-key", KEY, "--halo-toml", conf, "--firstboot-script", hook, card,
    )
    assert r.returncode == 0, r.stderr
    disk = Disk(card)
    assert {"user-data", "network-config", "meta-data"} <= set(disk.fat_ls())
    assert disk.fat_ls("::/halo") == ["firstboot.sh"], "no node.toml or halo.toml: cloud-init carries them"

    text = disk.fat_read("::/user-data")
    assert text.startswith("#cloud-config\n"), "cloud-init reads a part as cloud-config by this first line"
    user = yaml.safe_load(text)
    assert user["hostname"] == "lb1"
    assert user["ssh_authorized_keys"] == [KEY]
    (f,) = user["write_files"]
    assert f["path"] == "/etc/halo/halo.toml" and f["owner"] == "root:halo" and f["permissions"] == "0640"
    assert f["content"] == HALO_TOML.replace("priority = 100", "priority = 101"), "node's priority in every [vrrp.*]"

    net = yaml.safe_load(disk.fat_read("::/network-config"))
    assert net == {
        "version": 2,
        "ethernets": {"usb0": {
            "dhcp4": False,
            "addresses": ["192.0.2.11/24", "2001:db8::11/64"],
            "routes": [{"to": "0.0.0.0/0", "via": "192.0.2.1"}],  # cloud-init 25.1 refuses "default"
            "nameservers": {"addresses": ["192.0.2.53"]},
        }},
    }
    meta = yaml.safe_load(disk.fat_read("::/meta-data"))
    assert meta["local-hostname"] == "lb1"
    assert meta["instance-id"].startswith("halo-lb1-")


def test_node_cloud_init_again_is_a_new_instance_and_replaces_halo_files(card, tmp_path):
    import yaml

    conf = tmp_path / "halo.toml"
    conf.write_text(HALO_TOML)
    assert node("--hostname", "lb1", "--ssh-key", KEY, "--halo-toml", conf, card).returncode == 0
    assert Disk(card).fat_ls("::/halo") == ["halo.toml", "node.toml"]
    r = node("--cloud-init", "--hostname", "lb1", "--ssh-key", KEY, card)
    assert r.returncode == 0, r.stderr
    assert "removed halo/node.toml" in r.stderr and "removed halo/halo.toml" in r.stderr
    assert Disk(card).fat_ls("::/halo") == [], "halo's own files would win over cloud-init's"
    first = yaml.safe_load(Disk(card).fat_read("::/meta-data"))["instance-id"]
    net = yaml.safe_load(Disk(card).fat_read("::/network-config"))
    assert net["ethernets"] == {"eth0": {"dhcp4": True}}, "no --address: DHCP on eth0"
    assert "write_files" not in yaml.safe_load(Disk(card).fat_read("::/user-data"))
    assert "halo will not start" in r.stderr
    r = node("--cloud-init", "--hostname", "lb2", "--ssh-key", KEY, card)
    assert r.returncode == 0, r.stderr
    second = yaml.safe_load(Disk(card).fat_read("::/meta-data"))["instance-id"]
    assert second != first, "changed settings: cloud-init applies them again"


def test_node_cloud_init_refuses_bad_input_and_writes_nothing(card, tmp_path, halo_bin):
    bad = tmp_path / "halo.toml"
    bad.write_text(HALO_TOML.replace('vrid = 51', 'vrid = 300'))
    r = subprocess.run(
        [str(HALO_IMAGE_TOOL), "node", "--cloud-init", "--hostname", "lb1", "--ssh-key", KEY, "--halo-toml", str(bad), str(card)],
        capture_output=True, text=True, env={"HALO_BIN": str(halo_bin), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert r.returncode != 0 and "does not pass 'halo check'" in r.stderr
    r = node("--cloud-init", "--hostname", "LB_1", "--ssh-key", KEY, card)
    assert r.returncode != 0 and "not a valid host name" in r.stderr
    assert not {"user-data", "network-config", "meta-data"} & set(Disk(card).fat_ls())
