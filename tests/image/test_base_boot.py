"""Boot the `--base` image, whose network NetworkManager manages (the plain
image `build --no-halo` makes, as Raspberry Pi OS is), in qemu-system-aarch64
-M virt (TCG), with a card that has halo/node.toml (host name, static
address, SSH key, no halo.toml) and a broken cloud-init user-data beside it.

Checked in the one boot:
- NetworkManager, not a second network manager: node.toml's address comes
  from a NetworkManager profile halo-firstboot wrote (the SSH login reaches
  the VM at that address), systemd-networkd stays off;
- the broken user-data is reported on the console (cloud-init boots on
  without it), and halo does not start with the packaged example config:
  the card never gave it one.

qemu's user-mode network with restrict=on on 192.0.2.0/24; one host forward
on 127.0.0.1 to SSH."""

import subprocess
import time

import pytest

from conftest import BOOT_TIMEOUT, Console, _mtools_env, boot_files, make_card, qemu_command, run, ssh_keygen, stop_process
from test_boot import free_port, ssh, wait_ssh

NODE_ADDR = "192.0.2.12"
# Not YAML: a flow sequence that never closes.
BROKEN_USER_DATA = "#cloud-config\nhostname: [lb2\nwrite_files:\n  - path: /etc/halo/halo.toml\n"
NOT_STARTED = "halo-image: /etc/halo/halo.toml is the halo package's example"


class Vm(Console):
    def __init__(self, tmp, image):
        self.ssh_port = free_port()
        self.image = image
        super().__init__(tmp / "console.log", None, tmp / "qemu.stderr")

    def start(self, kernel, initrd, cmdline):
        cmd = qemu_command(
            kernel, initrd, cmdline, self.console,
            f"file={self.image},if=virtio,format=raw,snapshot=on",
            [
                "-netdev",
                "user,id=n0,restrict=on,net=192.0.2.0/24,host=192.0.2.2,dns=192.0.2.3,"
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


@pytest.fixture(scope="module")
def nm_vm(base_image, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("base-boot")
    disk_img = tmp / "lb2.img"
    run(["cp", "--sparse=always", str(base_image), str(disk_img)])
    key = ssh_keygen(tmp / "id_ed25519")
    make_card(disk_img, "--hostname", "lb2", "--address", f"{NODE_ADDR}/24", "--gateway", "192.0.2.2",
              "--ssh-key", f"{key}.pub")
    fat = f"{disk_img}@@{4 * 1024 * 1024}"
    for name, text in (("user-data", BROKEN_USER_DATA), ("meta-data", "instance-id: broken-1\n")):
        (tmp / name).write_text(text)
        run(["mcopy", "-o", "-i", fat, str(tmp / name), f"::/{name}"], env=_mtools_env())
    kernel, initrd, cmdline = boot_files(disk_img, tmp)

    vm = Vm(tmp, disk_img)
    try:
        # halo.service's start is skipped with this on the console. The
        # drive is snapshot=on: a second start boots the card as made.
        vm.boot(lambda: vm.start(kernel, initrd, cmdline), NOT_STARTED)
        print(f"\n--base (NetworkManager) boot to halo's skipped start: {time.monotonic() - vm.started:.0f} s (TCG)")
        wait_ssh(vm, key, BOOT_TIMEOUT)
        vm.key = key
        yield vm
    finally:
        vm.stop()
        print(f"--- console tail\n{vm.tail(25)}")


def test_node_toml_network_is_a_networkmanager_profile(nm_vm):
    r = ssh(nm_vm, nm_vm.key, "hostname; systemctl is-active NetworkManager; systemctl is-enabled systemd-networkd; "
            "systemctl is-active systemd-networkd; nmcli -t -f NAME,DEVICE connection show --active; "
            "ip -o -4 addr show dev eth0; ls /etc/systemd/network/")
    assert r.returncode == 0 or r.stdout, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "lb2", "node.toml's host name"
    assert lines[1] == "active"
    assert lines[2] == "disabled" and lines[3] == "inactive", "no second network manager"
    assert "halo-node:eth0" in lines
    assert f"inet {NODE_ADDR}/24" in r.stdout
    assert "05-halo-node.network" not in r.stdout


def test_broken_user_data_is_reported_on_the_console(nm_vm):
    text = nm_vm.text()
    reports = [ln for ln in text.splitlines() if "halo-firstboot: cloud-init" in ln and "reported" in ln]
    assert reports, nm_vm.tail()
    assert any("yaml" in ln.lower() for ln in reports), reports


def test_halo_does_not_start_with_the_packaged_example(nm_vm):
    r = ssh(nm_vm, nm_vm.key, "systemctl is-active halo; dpkg-query -W -f='${Conffiles}' halo | grep halo.toml; "
            "md5sum /etc/halo/halo.toml; journalctl -b -u halo --no-pager -o cat")
    lines = r.stdout.splitlines()
    assert lines[0] == "inactive"
    example_md5 = lines[1].split()[1]
    assert lines[2].split()[0] == example_md5, "still the packaged example"
    assert NOT_STARTED in r.stdout
    assert "HALO-READY" not in nm_vm.text()
