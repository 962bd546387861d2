"""Static checks of the built images, read in place (no mounts): partition
table, boot partition (firmware, config.txt, cmdline.txt, DTBs, kernel,
initrd), root file system (the halo .deb's files, units enabled, no shared
secrets or passwords), and the .xz/.bmap companions. The same halo checks run
on the image made by `build --base`."""

import io
import subprocess
import tarfile
import xml.etree.ElementTree as ET

import pytest
import yaml

from conftest import run

# Device trees the Pi firmware loads for each supported model. With
# upstream_kernel=1 in config.txt it looks for the mainline names that
# Debian's kernel ships (bcm2837-*, not Raspberry Pi OS's bcm2710-*).
# Not the Pi 5's bcm2712-rpi-5-b.dtb, which trixie's 6.12 ships without the
# drivers to boot it (docs/image.md): see test_pi_5_is_not_supported.
PI_DTBS = {
    "Pi 3 B": "bcm2837-rpi-3-b.dtb",
    "Pi 3 B+": "bcm2837-rpi-3-b-plus.dtb",
    "Pi 4 B": "bcm2711-rpi-4-b.dtb",
    "Pi 400": "bcm2711-rpi-400.dtb",
}
MIB = 1024 * 1024


# === partition table =======================================================


def test_partition_table_is_mbr_fat_then_ext4(disk):
    t = disk.table
    assert t["label"] == "dos", "the Pi 3 boot ROM reads MBR only"
    assert len(disk.parts) == 2
    boot, root = disk.parts
    assert boot["type"] == "c" and boot.get("bootable") is True
    assert boot["start"] * 512 == 4 * MIB
    assert boot["size"] * 512 == 256 * MIB
    assert root["type"] == "83"
    assert root["start"] == boot["start"] + boot["size"]
    assert (root["start"] + root["size"]) * 512 == disk.path.stat().st_size, "root ends the image (it grows on first boot)"


def test_file_system_labels(disk):
    fat = run(["blkid", "-p", "-O", str(disk.offset(1)), "-o", "export", str(disk.path)]).stdout
    assert "TYPE=vfat" in fat and "LABEL=RASPIFIRM" in fat
    ext = run(["blkid", "-p", "-O", str(disk.offset(2)), "-o", "export", str(disk.path)]).stdout
    assert "TYPE=ext4" in ext and "LABEL=RASPIROOT" in ext


# === boot partition ========================================================


def test_firmware_kernel_and_initrd_on_the_boot_partition(disk):
    files = disk.fat_ls()
    for f in ("bootcode.bin", "start4.elf", "fixup4.dat", "start.elf", "fixup.dat", "config.txt", "cmdline.txt"):
        assert f in files, f
    kernels = [f for f in files if f.startswith("vmlinuz-")]
    initrds = [f for f in files if f.startswith("initrd.img-")]
    assert len(kernels) == 1 and len(initrds) == 1
    assert kernels[0].removeprefix("vmlinuz-") == initrds[0].removeprefix("initrd.img-")


@pytest.mark.parametrize("model", sorted(PI_DTBS))
def test_device_tree_for_each_supported_model(disk, model):
    assert PI_DTBS[model] in disk.fat_ls(), f"{model}: {PI_DTBS[model]}"


def test_config_txt_boots_the_64_bit_kernel_and_initrd(disk):
    config = disk.fat_read("::/config.txt")
    lines = [ln.strip() for ln in config.splitlines()]
    assert "arm_64bit=1" in lines
    assert "upstream_kernel=1" in lines
    files = disk.fat_ls()
    kernel = next(f for f in files if f.startswith("vmlinuz-"))
    initrd = next(f for f in files if f.startswith("initrd.img-"))
    assert f"kernel={kernel}" in lines
    assert any(ln.startswith("initramfs ") and initrd in ln for ln in lines), config


def test_cmdline_txt_names_the_root_by_label(disk):
    args = disk.fat_read("::/cmdline.txt").split()
    assert "root=LABEL=RASPIROOT" in args
    assert "rootwait" in args
    assert "net.ifnames=0" in args, "eth0 on every model, as halo.toml says"
    assert len(disk.fat_read("::/cmdline.txt").strip().splitlines()) == 1, "the firmware reads one line"


NOCLOUD_SEED = "ds=nocloud;s=file:///boot/firmware/"


def test_cmdline_txt_names_cloud_init_s_seed_on_the_boot_partition(disk):
    # cloud-init 25.1 deprecates NoCloud's fs_label: the seed is named on the
    # kernel command line, and raspi-firmware's kernel hook writes it again
    # from /etc/default/raspi-extra-cmdline on every kernel upgrade.
    assert disk.fat_read("::/cmdline.txt").split()[-1] == NOCLOUD_SEED
    assert disk.ext_read("/etc/default/raspi-extra-cmdline").strip() == NOCLOUD_SEED


def test_initrd_holds_what_mounts_the_root(disk, tmp_path):
    initrd = next(f for f in disk.fat_ls() if f.startswith("initrd.img-"))
    run(["mcopy", "-n", "-i", disk.fat(), f"::/{initrd}", str(tmp_path / "initrd")],
        env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"})
    # Debian trixie's initramfs-tools: an uncompressed newc cpio first (the
    # modules, already .ko.xz), then the rest zstd-compressed (COMPRESS=zstd).
    data = (tmp_path / "initrd").read_bytes()
    start = data.find(b"\x28\xb5\x2f\xfd")
    assert start >= 0, "zstd archive in the initrd"
    listing = subprocess.run(
        f"cpio -it --quiet <{tmp_path / 'initrd'}; tail -c +{start + 1} {tmp_path / 'initrd'} | zstd -dc | cpio -it --quiet",
        shell=True, capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    mods = {p.rsplit("/", 1)[-1].split(".ko")[0] for p in listing if ".ko" in p}
    # virtio_pci is built into trixie's arm64 kernel (CONFIG_VIRTIO_PCI=y).
    for m in ("ext4", "jbd2", "mbcache", "virtio_blk", "sdhci-iproc", "bcm2835", "reset-raspberrypi", "dwc2", "xhci-pci", "usb-storage", "uas", "sd_mod"):
        assert m in mods, m
    assert any(p.endswith("busybox") for p in listing)


# === root file system ======================================================


def halo_checks(disk, deb, network="systemd-networkd.service"):
    """The halo layer, the same on our image and on a --base image.
    `network`: the one network manager enabled."""
    # Every file of the .deb, with its mode.
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
    assert any(m.name.endswith("usr/bin/halo") for m in members)
    for m in members:
        path = "/" + m.name.removeprefix("./")
        st = disk.ext_stat(path)
        assert st is not None, f"{path} from the .deb is missing"
        assert st[0] == "regular", path
        if path != "/etc/halo/halo.toml":  # the conffile's mode is set by postinst
            assert int(st[1], 8) == m.mode & 0o7777, path
    status = disk.ext_read("/var/lib/dpkg/status")
    block = next(b for b in status.split("\n\n") if b.startswith("Package: halo\n"))
    assert "Status: install ok installed" in block
    assert "Architecture: arm64" in block
    # dpkg's postinst made the user and the config's ownership.
    assert any(line.startswith("halo:") for line in disk.ext_read("/etc/passwd").splitlines())
    st = disk.ext_stat("/etc/halo/halo.toml")
    assert st[1] == "0640"

    # Enabled: halo by its package, first boot support by the image.
    wants = {
        "multi-user.target.wants": ["halo.service", "halo-firstboot-config.service", network],
        "sysinit.target.wants": ["halo-firstboot.service", "halo-growroot.service"],
        "halo.service.wants": ["halo-ready.service"],
    }
    for target, units in wants.items():
        for unit in units:
            st = disk.ext_stat(f"/etc/systemd/system/{target}/{unit}")
            assert st is not None and st[0] == "symlink", f"{unit} enabled in {target}"
            assert st[4].endswith("/" + unit), st
    assert disk.ext_stat("/lib/systemd/system/halo.service") or disk.ext_stat("/usr/lib/systemd/system/halo.service")
    other = {"systemd-networkd.service": "NetworkManager.service", "NetworkManager.service": "systemd-networkd.service"}[network]
    assert disk.ext_stat(f"/etc/systemd/system/multi-user.target.wants/{other}") is None, "one network manager"
    dropin = disk.ext_read("/etc/systemd/system/halo.service.d/halo-image.conf")
    # halo starts once the card has its own halo.toml (not the example).
    assert "ExecCondition=+/usr/lib/halo-image/configured" in dropin
    assert "After=halo-firstboot.service halo-firstboot-config.service" in dropin
    for f in ("firstboot", "growroot", "node-toml.awk", "priority.awk", "configured"):
        st = disk.ext_stat(f"/usr/lib/halo-image/{f}")
        assert st is not None and st[2] == 0, f

    # Key-only SSH, no host keys shared by every card.
    sshd = disk.ext_read("/etc/ssh/sshd_config.d/halo-image.conf")
    assert "PasswordAuthentication no" in sshd
    assert "KbdInteractiveAuthentication no" in sshd
    assert [n for n in disk.ext_ls("/etc/ssh") if n.startswith("ssh_host_")] == []


def test_halo_layer(disk, deb):
    halo_checks(disk, deb)


def test_no_password_anywhere(disk):
    for line in disk.ext_read("/etc/shadow").splitlines():
        name, pw = line.split(":")[:2]
        assert pw.startswith(("!", "*")), f"{name} has a usable password field"
    root = next(ln for ln in disk.ext_read("/etc/shadow").splitlines() if ln.startswith("root:"))
    assert root.split(":")[1].startswith("!"), "root is locked"


def test_per_card_identity_is_made_at_first_boot(disk):
    assert disk.ext_read("/etc/machine-id") == ""
    resolv = disk.ext_read("/etc/resolv.conf")
    assert not [ln for ln in resolv.splitlines() if ln.split()[:1] == ["nameserver"]], (
        "no build-machine nameserver left behind: " + resolv
    )
    assert disk.ext_stat("/var/lib/halo-image/applied") is None


def test_fstab_and_packages(disk):
    fstab = disk.ext_read("/etc/fstab")
    assert "LABEL=RASPIROOT /" in " ".join(fstab.split())
    assert "LABEL=RASPIFIRM /boot/firmware vfat" in " ".join(fstab.split())
    status = disk.ext_read("/var/lib/dpkg/status")
    installed = {b.split("\n", 1)[0].removeprefix("Package: ") for b in status.split("\n\n") if "Status: install ok installed" in b}
    for p in ("raspi-firmware", "linux-image-arm64", "systemd-sysv", "openssh-server", "nftables", "chrony", "initramfs-tools", "cloud-init",
              "console-setup", "keyboard-configuration"):
        assert p in installed, p
    init = disk.ext_read("/etc/initramfs-tools/conf.d/halo-image.conf")
    assert "MODULES=list" in init


def test_the_build_s_shortcuts_are_gone_from_the_card(disk):
    # The base build diverts update-initramfs to a stub, runs dpkg under
    # eatmydata and unpacks no docs (image/halo-image build_base_root); on
    # the card update-initramfs, dpkg and dpkg's settings are Debian's own.
    assert "update-initramfs" not in disk.ext_read("/var/lib/dpkg/diversions")
    assert "/usr/bin/dpkg" not in disk.ext_read("/var/lib/dpkg/diversions").split()
    assert "initramfs-tools" in disk.ext_read("/usr/sbin/update-initramfs"), "the real update-initramfs"
    assert disk.ext_stat("/usr/sbin/update-initramfs.halo-image") is None
    assert disk.ext_stat("/usr/bin/dpkg.distrib") is None and disk.ext_stat("/usr/bin/eatmydata") is None
    dpkg_cfg = disk.ext_read("/etc/dpkg/dpkg.cfg.d/99mmdebstrap")
    assert "path-exclude" not in dpkg_cfg and "force-unsafe-io" not in dpkg_cfg, dpkg_cfg
    # Unpacked without docs (dpkg still makes the directories), but every
    # package's copyright file is there.
    doc = "/usr/share/doc/cloud-init"
    assert [n for n in disk.ext_ls(doc) if disk.ext_stat(f"{doc}/{n}")[0] == "regular"] == ["copyright"]
    assert disk.ext_stat("/usr/share/doc/systemd/copyright") is not None


def test_xz_and_bmap_describe_the_image(image):
    xz = image.with_name(image.name + ".xz")
    bmap = image.with_name(image.name + ".bmap")
    assert xz.is_file() and bmap.is_file()
    listing = run(["xz", "--robot", "--list", str(xz)]).stdout
    totals = next(ln for ln in listing.splitlines() if ln.startswith("totals"))
    assert int(totals.split("\t")[4]) == image.stat().st_size, "the .xz unpacks to the image's size"
    root = ET.parse(bmap).getroot()
    assert int(root.findtext("ImageSize")) == image.stat().st_size
    assert 0 < int(root.findtext("MappedBlocksCount")) < int(root.findtext("BlocksCount"))


# === --base ================================================================


def test_base_image_keeps_its_layout_and_gets_the_halo_layer(base_disk, deb):
    assert base_disk.table["label"] == "dos" and len(base_disk.parts) == 2
    # The plain image's network is NetworkManager's (as Raspberry Pi OS's):
    # --base left it so, and enabled no systemd-networkd beside it.
    halo_checks(base_disk, deb, network="NetworkManager.service")
    assert "cmdline.txt" in base_disk.fat_ls()


# === Debian trixie, cloud-init =============================================


def test_debian_13_trixie(disk):
    assert disk.ext_read("/etc/debian_version").startswith("13."), disk.ext_read("/etc/debian_version")
    assert 'VERSION_CODENAME=trixie' in disk.ext_read("/usr/lib/os-release")


def test_cloud_init_reads_nocloud_from_the_boot_partition(disk):
    cfg = disk.ext_read("/etc/cloud/cloud.cfg.d/90-halo-image.cfg")
    lines = [ln.strip() for ln in cfg.splitlines()]
    assert "datasource_list: [NoCloud, None]" in lines
    assert not any(ln.startswith("fs_label:") for ln in lines), "deprecated in cloud-init 24.3"
    # Also in the data source's settings: Raspberry Pi Imager 2.0.10+ appends
    # its own `ds=nocloud;i=ID` to cmdline.txt, and cloud-init reads only the
    # last ds=nocloud on the command line.
    assert "seedfrom: file:///boot/firmware/" in lines
    assert "users: []" in lines and "disable_root: false" in lines
    for unit in ("cloud-init-local.service", "cloud-init-network.service", "cloud-config.service", "cloud-final.service"):
        assert disk.ext_stat(f"/usr/lib/systemd/system/{unit}") is not None, unit
    # The local stage reads the seed from /boot/firmware: mounted first.
    dropin = disk.ext_read("/etc/systemd/system/cloud-init-local.service.d/halo-image.conf")
    assert "RequiresMountsFor=/boot/firmware" in dropin.splitlines()


def test_the_boot_waits_minutes_for_the_fat_partition(disk):
    # systemd's 90 s default is less than udev can take to name the FAT
    # partition on a loaded machine emulating the Pi (then: emergency mode).
    dropin = disk.ext_read("/etc/systemd/system/dev-disk-by\\x2dlabel-RASPIFIRM.device.d/halo-image.conf")
    assert "JobRunningTimeoutSec=10min" in dropin.splitlines()


def test_locale_gen_takes_locale_names_as_cloud_init_calls_it(disk):
    # Debian's locale-gen ignores its arguments: cloud-init's `locale:`
    # failed. The image's own one, first on PATH, enables them first.
    ftype, mode, uid, gid, _ = disk.ext_stat("/usr/local/sbin/locale-gen")
    assert (ftype, mode, uid, gid) == ("regular", "0755", 0, 0)
    text = disk.ext_read("/usr/local/sbin/locale-gen")
    assert "/etc/locale.gen" in text and text.rstrip().endswith("exec /usr/sbin/locale-gen $opts")


def test_the_card_carries_an_empty_cloud_init_seed(disk):
    # A card nobody customised still has a seed (cloud-init's seedfrom needs
    # meta-data and user-data), which Imager or `node --cloud-init` replace.
    files = disk.fat_ls()
    assert "meta-data" in files and "user-data" in files
    assert "network-config" not in files, "without one: DHCP on the first Ethernet interface"
    assert yaml.safe_load(disk.fat_read("::/meta-data"))["instance-id"] == "halo-image"
    user_data = disk.fat_read("::/user-data")
    assert user_data.startswith("#cloud-config\n")
    assert yaml.safe_load(user_data) is None, "nothing but comments"


def test_networkmanager_is_installed_but_not_enabled(disk):
    # One image for two network managers: the halo image runs networkd;
    # NetworkManager is there for the plain image (--base's test base).
    assert disk.ext_stat("/usr/sbin/NetworkManager") is not None
    for unit in ("NetworkManager.service", "NetworkManager-wait-online.service"):
        for target in ("multi-user.target.wants", "network-online.target.wants"):
            assert disk.ext_stat(f"/etc/systemd/system/{target}/{unit}") is None, f"{unit} in {target}"


def test_pi_5_is_not_supported(disk, tmp_path):
    """docs/image.md's reasons, read from the image's kernel: the Pi 5's
    device tree is there, its SD controller and RP1 drivers are not."""
    assert "bcm2712-rpi-5-b.dtb" in disk.fat_ls()
    config_name = next(n for n in disk.ext_ls("/boot") if n.startswith("config-"))
    config = disk.ext_read(f"/boot/{config_name}")
    assert "# CONFIG_MMC_SDHCI_BRCMSTB is not set" in config
    assert "RP1" not in config


# === the base build's native tools (image/base/native-tools.sh) ============


def _mtime_and_size(disk, path):
    out, _ = disk.debugfs(f"stat {path}")
    mtime = size = None
    for line in out.splitlines():
        f = line.split()
        if "Size:" in f and size is None:  # the first one ("Fragment: ... Size: 0" follows)
            size = int(f[f.index("Size:") + 1])
        if f[:1] == ["mtime:"]:
            mtime = int(f[1].split(":")[0], 16)
    assert mtime is not None and size is not None, out
    return mtime, size


@pytest.mark.parametrize("source", [
    "/usr/lib/python3.13/os.py",  # libpython3.13-minimal, its postinst's compile
    "/usr/lib/python3.13/email/parser.py",  # libpython3.13-stdlib, python3.13's postinst
    "/usr/lib/python3/dist-packages/cloudinit/cmd/main.py",  # py3compile -p cloud-init
    "/usr/lib/python3/dist-packages/yaml/__init__.py",  # py3compile -p python3-yaml
])
def test_python_modules_are_byte_compiled_for_the_card_s_python(disk, tmp_path, source):
    # Compiled by the build machine's python3.13 (the same version), as the
    # card's would have: a timestamp .pyc beside the source that the card's
    # python3.13 takes as valid (3.13's magic number, the source's mtime and
    # size), so no first boot compiles them again.
    d, name = source.rsplit("/", 1)
    pyc = f"{d}/__pycache__/{name.removesuffix('.py')}.cpython-313.pyc"
    out = tmp_path / "pyc"
    disk.debugfs(f"dump {pyc} {out}")
    header = out.read_bytes()[:16]
    mtime, size = _mtime_and_size(disk, source)
    assert header[:4] == (3571).to_bytes(2, "little") + b"\r\n", "Python 3.13's magic number"
    assert int.from_bytes(header[4:8], "little") == 0, "a timestamp .pyc, as py_compile and py3compile write"
    assert int.from_bytes(header[8:12], "little") == mtime & 0xFFFFFFFF
    assert int.from_bytes(header[12:16], "little") == size & 0xFFFFFFFF


def test_the_native_tools_are_gone_from_the_card(disk, tmp_path):
    diversions = disk.ext_read("/var/lib/dpkg/diversions")
    for path in ("/usr/bin/python3.13", "/usr/sbin/depmod", "/usr/sbin/update-ca-certificates", "/usr/bin/grep",
                 "/usr/bin/systemd-hwdb", "/usr/bin/ckbcomp"):
        assert path not in diversions.split(), path
        assert disk.ext_stat(path + ".halo-image") is None, path
    for path in ("/.halo-native", "/lib64", "/usr/lib64", "/usr/lib/x86_64-linux-gnu"):
        assert disk.ext_stat(path) is None, path
    assert disk.ext_stat("/usr/bin/python3.13")[0] == "regular"
    assert disk.ext_stat("/usr/bin/grep")[0] == "regular"
    assert disk.ext_stat("/usr/sbin/depmod")[4] == "../bin/kmod"
    assert "halo" not in disk.ext_read("/usr/sbin/update-ca-certificates")
    assert disk.ext_stat("/usr/bin/systemd-hwdb")[0] == "regular"
    assert "halo" not in disk.ext_read("/usr/bin/ckbcomp") and "XKB" in disk.ext_read("/usr/bin/ckbcomp")
    # What update-ca-certificates and depmod made natively is there.
    assert "BEGIN CERTIFICATE" in disk.ext_read("/etc/ssl/certs/ca-certificates.crt")
    kernel = next(n for n in disk.ext_ls("/usr/lib/modules"))
    assert disk.ext_stat(f"/usr/lib/modules/{kernel}/modules.dep.bin") is not None
    # ... and systemd-hwdb (udev's hardware database) and ckbcomp (the
    # console keymap setupcon caches).
    disk.debugfs(f"dump /usr/lib/udev/hwdb.bin {tmp_path / 'hwdb.bin'}")
    assert (tmp_path / "hwdb.bin").read_bytes()[:8] == b"KSLPHHRH", "systemd's hwdb signature"
    assert disk.ext_stat("/etc/console-setup/cached_UTF-8_del.kmap.gz") is not None
