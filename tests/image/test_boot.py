"""Boot the built image in qemu-system-aarch64 (-M virt, TCG) as node lb1 and
check, from the host, what a user would: halo becomes READY (marker on the
serial console), its proxy answers through the virtual IP with the backend's
page, `halo status` says MASTER, SSH takes the key and refuses passwords, the
root file system grew to the disk, and the proxy runs its io_uring driver.

The VM's network is qemu's user-mode stack with restrict=on: the guest
cannot reach the host or anything beyond it; only the two host port
forwards on 127.0.0.1 reach in. Its subnet is 192.0.2.0/24 (TEST-NET-1).
The backend is busybox httpd inside the VM, started by the card's
halo/firstboot.sh hook (the image has no nginx; busybox is in it for the
initramfs)."""

import os
import secrets
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import BOOT_FAILURES, BOOT_TIMEOUT, Console, Disk, boot_files, make_card, qemu_command, run, ssh_keygen, stop_process

VIP = "192.0.2.100"
NODE_ADDR = "192.0.2.11"

HALO_TOML = """\
# The boot test's cluster of one: VIP 192.0.2.100 on eth0, the proxy on :80
# in front of busybox httpd on 127.0.0.1:8080 in the same VM.
[vrrp.VI_1]
interface = "eth0"
vrid = 51
priority = 100          # node.toml's priority (150) replaces this at first boot
advert_interval = "1s"
virtual_ips = ["192.0.2.100/24"]
track = [{ proxy = "web", weight = -50 }]

[proxy.web]
bind = ["0.0.0.0:80"]
io = "uring"            # fail rather than fall back: the VM's kernel has io_uring
servers = [{ name = "local", address = "127.0.0.1:8080" }]

[proxy.web.health]
path = "/"
interval = "1s"
rise = 1
fall = 2
"""

FIRSTBOOT_HOOK = """\
#!/bin/sh
# Boot test only: a backend for halo's proxy, as a transient unit.
set -e
mkdir -p /srv/www
echo "halo image boot test {token}" >/srv/www/index.html
systemd-run --no-block --unit=test-backend --description="boot test backend" \\
    busybox httpd -f -p 127.0.0.1:8080 -h /srv/www
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Vm(Console):
    def __init__(self, tmp_path, image):
        self.dir = tmp_path
        self.http_port = free_port()
        self.ssh_port = free_port()
        self.image = image
        super().__init__(tmp_path / "console.log", None, tmp_path / "qemu.stderr")

    def start(self, kernel, initrd, cmdline):
        cmd = qemu_command(
            kernel, initrd, cmdline, self.console,
            f"file={self.image},if=virtio,format=raw,snapshot=on",
            [
                "-netdev",
                "user,id=n0,restrict=on,net=192.0.2.0/24,host=192.0.2.2,dns=192.0.2.3,"
                f"hostfwd=tcp:127.0.0.1:{self.http_port}-{VIP}:80,"
                f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-{NODE_ADDR}:22",
                "-device", "virtio-net-pci,netdev=n0,romfile=",
            ],
        )
        self.log = open(self.stderr, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self):
        stop_process(self.proc)
        if self.proc:
            self.log.close()


def ssh_cmd(vm, key, *extra):
    return [
        "ssh", "-p", str(vm.ssh_port), "-i", str(key),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR",
        *extra, "root@127.0.0.1",
    ]


def ssh(vm, key, command, timeout=120):
    return subprocess.run(ssh_cmd(vm, key) + [command], capture_output=True, text=True, timeout=timeout)


def wait_ssh(vm, key, timeout):
    """Until sshd in the VM takes the key. HALO-READY comes from halo.service;
    ssh.service starts beside it, not before it, so it may not listen yet
    (qemu's port forward then resets the connection)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            r = ssh(vm, key, "true", timeout=180)
            if r.returncode == 0:
                return
            last = r.stderr.strip()
        except subprocess.TimeoutExpired:
            last = "ssh timed out"
        if time.monotonic() > deadline:
            pytest.fail(f"no ssh into the VM after {timeout} s: {last}\n{vm.tail()}")
        vm.check(r"(?!)", BOOT_FAILURES)  # never matches: fails at once if qemu is gone
        time.sleep(3)


def wait_status(vm, key, pattern, timeout):
    """`halo status` (plus eth0's addresses) once its output shows `pattern`."""
    deadline = time.monotonic() + timeout
    while True:
        r = ssh(vm, key, "halo status; echo ---; ip -o addr show dev eth0")
        if r.returncode == 0 and pattern in r.stdout.split("---", 1)[0]:
            return r
        if time.monotonic() > deadline:
            return r
        time.sleep(3)


@pytest.fixture(scope="module")
def booted(image, tmp_path_factory):
    """The image, made into node lb1 by `halo-image node`, booted once."""
    tmp = tmp_path_factory.mktemp("boot")
    disk_img = tmp / "lb1.img"
    run(["cp", "--sparse=always", str(image), str(disk_img)])
    original_size = disk_img.stat().st_size
    # A card bigger than the image: halo-growroot has room to grow into.
    with open(disk_img, "r+b") as f:
        f.truncate(original_size + 512 * 1024 * 1024)

    key = ssh_keygen(tmp / "id_ed25519")
    token = secrets.token_hex(8)
    conf = tmp / "halo.toml"
    conf.write_text(HALO_TOML)
    hook = tmp / "firstboot.sh"
    hook.write_text(FIRSTBOOT_HOOK.format(token=token))
    make_card(
        disk_img, "--hostname", "lb1", "--address", f"{NODE_ADDR}/24",
        "--gateway", "192.0.2.2", "--priority", "150", "--ssh-key", f"{key}.pub",
        "--halo-toml", conf, "--firstboot-script", hook,
    )

    kernel, initrd, cmdline = boot_files(disk_img, tmp)

    vm = Vm(tmp, disk_img)
    try:
        # The drive is snapshot=on: a second start boots the card as made.
        vm.boot(lambda: vm.start(kernel, initrd, cmdline), r"HALO-READY lb1")
        vm.ready_after = time.monotonic() - vm.started
        print(f"\nboot to HALO-READY: {vm.ready_after:.0f} s (TCG)")
        (Path(os.environ.get("HALO_IMAGE_OUT", Path(image).parent)) / "boot-time.txt").write_text(f"{vm.ready_after:.0f}\n")
        wait_ssh(vm, key, BOOT_TIMEOUT)
        vm.token = token
        vm.key = key
        vm.original_size = original_size
        yield vm
    finally:
        vm.stop()
        print(f"--- console tail\n{vm.tail(25)}")


def test_first_boot_applied_the_card(booted):
    text = booted.text()
    assert "halo-firstboot: generated SSH host keys" in text
    assert "halo-firstboot: applied" in text and "(host lb1)" in text


def wait_for_page(vm, timeout=600):
    """Until the VM's forwarded port 80 (the VIP) answers 200 with the
    backend page carrying `vm.token`: the health check must first see the
    backend up and halo be MASTER. Seconds on hardware; a bound for a slow
    TCG. Fails with the last answer and the console's tail."""
    url = f"http://127.0.0.1:{vm.http_port}/"
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=20) as r:
                body = r.read().decode()
                if r.status == 200 and vm.token in body:
                    return
                last = f"{r.status} {body[:200]!r}"
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = repr(e)
        time.sleep(3)
    pytest.fail(f"no backend page through {url}: last answer {last}\n{vm.tail()}")


def test_proxy_answers_through_the_vip_with_the_backends_page(booted):
    wait_for_page(booted)


def test_halo_status_says_master_with_the_nodes_priority(booted):
    # Alone on its network, halo is MASTER once its master-down timer ran out
    # after the start (a few seconds; waited for, whatever ran before).
    r = wait_status(booted, booted.key, "MASTER", 600)
    assert r.returncode == 0, r.stderr
    status, addrs = r.stdout.split("---", 1)
    assert "MASTER" in status, r.stdout
    assert "150" in status, "node.toml's priority replaces halo.toml's: " + status
    assert f"inet {VIP}/24" in addrs
    assert f"inet {NODE_ADDR}/24" in addrs


def test_ssh_takes_the_key_and_refuses_passwords(booted):
    r = ssh(booted, booted.key, "hostname; passwd -S root; sshd -T | grep -Ei '^(passwordauthentication|kbdinteractiveauthentication|permitrootlogin)'")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert lines[0] == "lb1"
    assert lines[1].split()[1] == "L", "root's password is locked: " + lines[1]
    assert "passwordauthentication no" in r.stdout
    assert "kbdinteractiveauthentication no" in r.stdout
    assert "permitrootlogin without-password" in r.stdout
    # A password-only client is turned away before any password is asked for.
    r = subprocess.run(
        ssh_cmd(booted, booted.key, "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive") + ["true"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 255
    assert "Permission denied (publickey)" in r.stderr


def test_root_grew_to_the_disk_and_io_uring_is_used(booted):
    r = ssh(booted, booted.key, "cat /sys/class/block/vda2/size /sys/class/block/vda/size; "
            "df -B1 --output=size / | tail -n1; journalctl -b -u halo --no-pager -o cat")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    part2, disk_sectors, fs_bytes = int(lines[0]), int(lines[1]), int(lines[2])
    disk = Disk(booted.image)
    start2 = disk.parts[1]["start"]
    assert start2 + part2 == disk_sectors, "partition 2 reaches the end of the disk"
    assert fs_bytes > booted.original_size - start2 * 512, "ext4 was resized into the new space"
    journal = "\n".join(lines[3:])
    assert "io_uring unavailable" not in journal
    assert "halo-growroot: grew" in booted.text()
