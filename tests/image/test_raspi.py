"""Boot the built image on a Raspberry Pi board model, qemu-system-aarch64
-M raspi3b (BCM2837, TCG), the way a Pi 3 B boots the card: the Pi's own
device tree (bcm2837-rpi-3-b.dtb), kernel and initrd from the card's FAT
partition, `cmdline.txt` exactly as written on the card, the card as the SD
card, the network on the USB bus (`-device usb-net`) and the console on the
mini UART (ttyS1: qemu's second serial port). What `virt` never exercises:
the board's device tree, SD controller, USB network and console settings.

The same boot checks Raspberry Pi Imager's way of customising a card:
`halo-image node --cloud-init` writes only cloud-init's NoCloud files onto
the FAT partition (user-data, network-config, meta-data; no halo/node.toml
or halo/halo.toml), and the checks are that cloud-init applied each: the
host name, root's SSH key, the static address from network-config on the
emulated NIC (usb0 here: qemu's usb-net is a CDC device where a real Pi 3 B
has an smsc95xx, eth0), and halo.toml through write_files (halo READY,
MASTER with the priority the node command set, the proxy answering through
the VIP from a host port forward).

On top of that the card gets what Raspberry Pi Imager (2.0.10 and later)
writes when its "OS customisation" sets a user with a key and a time zone:
those lines in user-data (plus cloud-init's `locale`, which Imager does not
write), its own meta-data, and `ds=nocloud;i=ID` appended to cmdline.txt,
which hides the image's own `ds=nocloud;s=...` from cloud-init (the data
source's settings name the seed too). Checked: the time zone, keyboard
layout, locale and Imager's user applied, and cloud-init done without errors
or warnings (its keyboard module restarts console-setup.service, which the
image carries for that). Not written: Imager's `packages: [avahi-daemon]`
(and its apt settings), which needs a Debian mirror the test VM cannot
reach.

qemu's user-mode network with restrict=on on 192.0.2.0/24: the guest reaches
nothing outside; two host forwards on 127.0.0.1 reach in. The backend is
busybox httpd in the VM, started by the card's halo/firstboot.sh."""

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BOOT_TIMEOUT, Console, Disk, _mtools_env, card_overlay, qemu_binary, run, ssh_keygen, stop_process
from test_boot import FIRSTBOOT_HOOK, free_port, ssh, ssh_cmd, wait_for_page, wait_ssh

VIP = "192.0.2.100"
NODE_ADDR = "192.0.2.11"
IFACE = "usb0"  # qemu's usb-net (cdc_subset); a real Pi 3 B's NIC is eth0
DTB = "bcm2837-rpi-3-b.dtb"

HALO_TOML = f"""\
# The raspi3b test's cluster of one: VIP {VIP} on {IFACE}, the proxy on :80
# in front of busybox httpd on 127.0.0.1:8080 in the same VM.
[vrrp.VI_1]
interface = "{IFACE}"
vrid = 51
priority = 100          # --priority 150 replaces this in user-data
advert_interval = "1s"
virtual_ips = ["{VIP}/24"]
track = [{{ proxy = "web", weight = -50 }}]

[proxy.web]
bind = ["0.0.0.0:80"]
servers = [{{ name = "local", address = "127.0.0.1:8080" }}]

[proxy.web.health]
path = "/"
interval = "1s"
rise = 1
fall = 2
"""


IMAGER_ID = "rpi-imager-1764950400000"
IMAGER_TZ = "Europe/Berlin"
IMAGER_KEYBOARD = "de"
LOCALE = "de_DE.UTF-8"


def imager_user_data(key):
    """The lines Raspberry Pi Imager 2.0.10+ writes into user-data for a time
    zone, a user `pi` with an SSH key and no password and a keyboard layout
    (rpi-imager's CustomisationGenerator::generateCloudInitUserData), less
    `packages`/`apt` (no mirror here); `locale` is cloud-init's own key."""
    return f"""timezone: {IMAGER_TZ}
user:
  name: pi
  shell: /bin/bash
  lock_passwd: true
  ssh_authorized_keys:
    - "{key}"
  sudo: null

ssh_pwauth: false

runcmd:
  - [ systemctl, enable, --now, ssh ]
keyboard:
  model: pc105
  layout: "{IMAGER_KEYBOARD}"
locale: {LOCALE}
"""


def imager_edit(key):
    """Raspberry Pi Imager's writes onto a card that `node --cloud-init`
    prepared: its user-data lines appended, its meta-data, and its
    instance-id on cmdline.txt (Imager 2.0.10+)."""
    def edit(head):
        disk = Disk(head)
        env = _mtools_env()
        user_data = disk.fat_read("::/user-data") + imager_user_data(key)
        cmdline = disk.fat_read("::/cmdline.txt").strip() + f" ds=nocloud;i={IMAGER_ID}\n"
        for name, text in (("user-data", user_data), ("cmdline.txt", cmdline),
                           ("meta-data", f"instance-id: {IMAGER_ID}\n")):
            src = head.parent / f"imager-{name}"
            src.write_text(text)
            run(["mcopy", "-o", "-i", disk.fat(), str(src), f"::/{name}"], env=env)
    return edit


def pow2_at_least(n):
    p = 1
    while p < n:
        p *= 2
    return p


def raspi_boot_files(disk, dest, dtb):
    """Kernel, initrd and device tree from a card's boot partition, and its
    cmdline.txt as written, as the Pi firmware reads them."""
    names = [f for f in disk.fat_ls() if f.startswith(("vmlinuz-", "initrd.img-")) or f == dtb]
    for name in names:
        run(["mcopy", "-n", "-i", disk.fat(), f"::/{name}", str(dest / name)], env=_mtools_env())
    files = {f.name: f for f in dest.iterdir()}
    kernel = next(p for n, p in files.items() if n.startswith("vmlinuz-"))
    initrd = next(p for n, p in files.items() if n.startswith("initrd.img-"))
    return kernel, initrd, files[dtb], disk.fat_read("::/cmdline.txt").strip()


def raspi_command(qemu, machine, mem, boot, console, sd, net=()):
    kernel, initrd, dtb, cmdline = boot
    return [
        qemu,
        "-M", machine, "-m", mem,
        "-display", "none", "-monitor", "none", "-no-reboot",
        # serial0 = the PL011 (Bluetooth on a Pi 3/4), serial1 = the mini
        # UART: ttyS1, the console cmdline.txt names.
        "-serial", "null", "-serial", f"file:{console}",
        "-kernel", str(kernel), "-initrd", str(initrd), "-dtb", str(dtb),
        "-append", cmdline,
        "-drive", f"if=sd,format=qcow2,file={sd}",
        *net,
    ]


class RaspiVm(Console):
    """qemu -M raspi3b booting a card (a qcow2 overlay on the image)."""

    def __init__(self, tmp):
        self.http_port = free_port()
        self.ssh_port = free_port()
        super().__init__(tmp / "console.log", None, tmp / "qemu.stderr")

    def start(self, boot, sd):
        cmd = raspi_command(qemu_binary(), "raspi3b", "1G", boot, self.console, sd, [
            "-netdev",
            "user,id=n0,restrict=on,net=192.0.2.0/24,host=192.0.2.2,dns=192.0.2.3,"
            f"hostfwd=tcp:127.0.0.1:{self.http_port}-{VIP}:80,"
            f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-{NODE_ADDR}:22",
            "-device", "usb-net,netdev=n0",
        ])
        self.log = open(self.stderr, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self):
        stop_process(self.proc)
        if self.proc:
            self.log.close()


@pytest.fixture(scope="module")
def raspi(image, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("raspi3b")
    key = ssh_keygen(tmp / "id_ed25519")
    token = secrets.token_hex(8)
    conf = tmp / "halo.toml"
    conf.write_text(HALO_TOML)
    hook = tmp / "firstboot.sh"
    hook.write_text(FIRSTBOOT_HOOK.format(token=token))
    sd = tmp / "sd.qcow2"
    head = card_overlay(
        image, sd, tmp, "--cloud-init", "--hostname", "lb1", "--interface", IFACE,
        "--address", f"{NODE_ADDR}/24", "--gateway", "192.0.2.2", "--priority", "150",
        "--ssh-key", f"{key}.pub", "--halo-toml", conf, "--firstboot-script", hook,
        edit=imager_edit(Path(f"{key}.pub").read_text().strip()),
    )
    # The SD card model takes power-of-two sizes only; the room beyond the
    # image is what halo-growroot grows the root into.
    size = pow2_at_least(Path(image).stat().st_size + 256 * 1024 * 1024)
    run(["qemu-img", "resize", "-q", "-f", "qcow2", str(sd), str(size)])

    disk = Disk(head)
    (tmp / "boot").mkdir()
    boot = raspi_boot_files(disk, tmp / "boot", DTB)
    seed = {f: disk.fat_read(f"::/{f}") for f in ("user-data", "network-config", "meta-data")}

    # The card as made, for a second start (Console.boot): the first boot
    # writes into the overlay.
    made = tmp / "sd-made.qcow2"
    shutil.copyfile(sd, made)

    def start():
        shutil.copyfile(made, sd)
        vm.start(boot, sd)

    vm = RaspiVm(tmp)
    try:
        vm.boot(start, r"HALO-READY lb1")
        vm.ready_after = time.monotonic() - vm.started
        print(f"\nraspi3b boot to HALO-READY: {vm.ready_after:.0f} s (TCG)")
        out = Path(os.environ.get("HALO_IMAGE_OUT", Path(image).parent))
        (out / "boot-time-raspi3b.txt").write_text(f"{vm.ready_after:.0f}\n")
        wait_ssh(vm, key, BOOT_TIMEOUT)
        vm.key, vm.token, vm.seed, vm.conf, vm.size = key, token, seed, conf, size
        yield vm
    finally:
        vm.stop()
        print(f"--- console tail\n{vm.tail(25)}")


def test_card_carries_only_cloud_init_files(raspi):
    assert raspi.seed["user-data"].startswith("#cloud-config\n")
    assert "write_files:" in raspi.seed["user-data"]
    assert f"timezone: {IMAGER_TZ}" in raspi.seed["user-data"]
    assert f'"{NODE_ADDR}/24"' in raspi.seed["network-config"]
    assert raspi.seed["meta-data"] == f"instance-id: {IMAGER_ID}\n"


def test_the_board_is_a_pi_3_b_booted_from_the_sd_card(raspi):
    r = ssh(raspi, raspi.key, "tr -d '\\0' </proc/device-tree/model; echo; findmnt -n -o SOURCE /; "
            "findmnt -n -o SOURCE /boot/firmware; cat /proc/cmdline")
    assert r.returncode == 0, r.stderr
    model, root, boot, cmdline = r.stdout.splitlines()[:4]
    assert model.startswith("Raspberry Pi 3 Model B"), model
    assert root == "/dev/mmcblk0p2" and boot == "/dev/mmcblk0p1", (root, boot)
    assert "console=ttyS1,115200" in cmdline.split()
    # The image's seed and, last, Imager's instance-id (which cloud-init reads).
    assert cmdline.split()[-2:] == ["ds=nocloud;s=file:///boot/firmware/", f"ds=nocloud;i={IMAGER_ID}"]


def test_cloud_init_set_host_name_key_and_static_address(raspi):
    # The SSH login itself (wait_ssh) took the key from user-data, to the
    # static address from network-config (the host forward targets it).
    r = ssh(raspi, raspi.key, f"hostname; ip -o -4 addr show dev {IFACE}; ip route show default; "
            f"cat /etc/systemd/network/10-cloud-init-{IFACE}.network.d/halo-image.conf; cat /root/.ssh/authorized_keys")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "lb1"
    assert f"inet {NODE_ADDR}/24" in r.stdout
    assert "default via 192.0.2.2" in r.stdout
    assert "KeepConfiguration=yes" in r.stdout, "networkd keeps halo's VIP on cloud-init's interface"
    assert Path(f"{raspi.key}.pub").read_text().split()[1] in r.stdout


def test_halo_toml_came_from_write_files(raspi):
    r = ssh(raspi, raspi.key, "cat /etc/halo/halo.toml; echo ---; stat -c '%U:%G %a' /etc/halo/halo.toml; "
            "ls /boot/firmware/halo/; test ! -e /var/lib/halo-image/halo-configured && echo no-marker")
    assert r.returncode == 0, r.stderr
    conf, rest = r.stdout.split("---\n", 1)
    want = raspi.conf.read_text().replace("priority = 100          # --priority 150 replaces this in user-data", "priority = 150")
    assert conf == want
    assert rest.splitlines()[0] == "root:halo 640"
    assert "halo.toml" not in rest and "node.toml" not in rest, "only cloud-init carried the config"
    assert "no-marker" in rest, "halo started because the file is not the package's example"


def test_halo_is_master_and_the_proxy_answers_through_the_vip(raspi):
    wait_for_page(raspi)
    r = ssh(raspi, raspi.key, f"halo status; ip -o -4 addr show dev {IFACE}")
    assert r.returncode == 0, r.stderr
    assert "MASTER" in r.stdout and "150" in r.stdout, r.stdout
    assert f"inet {VIP}/24" in r.stdout


def test_root_grew_to_the_sd_card(raspi):
    r = ssh(raspi, raspi.key, "cat /sys/class/block/mmcblk0p2/start /sys/class/block/mmcblk0p2/size /sys/class/block/mmcblk0/size")
    assert r.returncode == 0, r.stderr
    start, size, disk = map(int, r.stdout.split())
    assert start + size == disk == raspi.size // 512
    assert "halo-growroot: grew /dev/mmcblk0p2" in raspi.text()


def test_imager_s_time_zone_and_user_and_the_locale_applied(raspi):
    r = ssh(raspi, raspi.key, "readlink /etc/localtime; cat /etc/timezone; date +%Z; "
            "grep '^LANG=' /etc/default/locale; locale -a; "
            "getent passwd pi; cat /home/pi/.ssh/authorized_keys; passwd -S pi")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert out[0].endswith(f"/zoneinfo/{IMAGER_TZ}") and out[1] == IMAGER_TZ, out
    assert out[2] in ("CET", "CEST"), out
    assert f"LANG={LOCALE}" in out and "de_DE.utf8" in out, out
    assert any(ln.startswith("pi:") and ln.endswith(":/home/pi:/bin/bash") for ln in out), out
    assert Path(f"{raspi.key}.pub").read_text().split()[1] in r.stdout
    assert any(ln.startswith("pi L ") for ln in out), "Imager's lock_passwd: true"


def test_imager_s_keyboard_layout_applied(raspi):
    # cloud-init's keyboard module writes /etc/default/keyboard and restarts
    # console-setup.service; without console-setup in the image that restart
    # failed and cloud-init ended with an error (the status test below).
    r = ssh(raspi, raspi.key, "cat /etc/default/keyboard; echo ---; systemctl is-failed console-setup.service; "
            "systemctl show -p LoadState --value console-setup.service")
    assert "---" in r.stdout, r.stdout + r.stderr
    keyboard, state = r.stdout.split("---\n", 1)
    assert f'XKBLAYOUT="{IMAGER_KEYBOARD}"' in keyboard.splitlines(), keyboard
    assert 'XKBMODEL="pc105"' in keyboard.splitlines(), keyboard
    is_failed, load = state.split()
    assert load == "loaded" and is_failed != "failed", state


def test_cloud_init_found_the_seed_and_finished_without_errors_or_warnings(raspi):
    # cloud-init 25.1 reports deprecations (NoCloud's fs_label, which the
    # image used before) and every warning as recoverable errors: exit 2,
    # "degraded done". None here.
    r = ssh(raspi, raspi.key, "cloud-init status --wait --long", timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "status: done" in r.stdout, r.stdout
    assert "errors: []" in r.stdout and "recoverable_errors: {}" in r.stdout, r.stdout
    detail = r.stdout.split("detail:", 1)[1].strip().splitlines()[0]
    assert "DataSourceNoCloud" in detail and "file:///boot/firmware/" in detail, detail
    reported = [ln for ln in raspi.text().splitlines() if "halo-firstboot: cloud-init" in ln]
    assert reported == [], reported
