"""Helpers for the image tests: find the built images and read their
partitions without mounting (sfdisk --json, mtools at an offset, debugfs with
e2fsprogs' `?offset=` device syntax); make a card for a node and boot it in
qemu-system-aarch64 (test_boot, test_pair)."""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("HALO_IMAGE_OUT", ROOT / "build" / "image"))
HALO_IMAGE_TOOL = ROOT / "image" / "halo-image"
# Downloads and unpacked tools kept between runs (tests/image/run.sh).
TEST_CACHE = Path(os.environ.get("HALO_TEST_CACHE", "/var/cache/halo-tests"))
NODE_PARSER = ROOT / "image" / "overlay" / "usr" / "lib" / "halo-image" / "node-toml.awk"


def run(cmd, **kw):
    kw.setdefault("check", True)
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(cmd, **kw)


def _image(env, default, how):
    path = Path(os.environ.get(env) or default)
    if not path.is_file():
        pytest.fail(f"{path} not found: build it first ({how}, or bash tests/image/run.sh)")
    return path


@pytest.fixture(scope="session")
def image():
    return _image("HALO_IMAGE", OUT / "halo-pi-arm64.img", "image/halo-image build")


@pytest.fixture(scope="session")
def base_image():
    return _image(
        "HALO_BASE_IMAGE",
        OUT / "debian-pi-arm64-halo.img",
        "image/halo-image build --no-halo, then build --base",
    )


@pytest.fixture(scope="session")
def deb():
    path = os.environ.get("HALO_IMAGE_DEB")
    if path:
        return Path(path)
    debs = sorted((ROOT / "target" / "debian").glob("halo_*_arm64.deb"), key=lambda p: p.stat().st_mtime)
    if not debs:
        pytest.fail("no target/debian/halo_*_arm64.deb: bash daemon/debian/build-deb.sh arm64")
    return debs[-1]


class Disk:
    """A disk image's partition table and its two file systems, read in place."""

    def __init__(self, path):
        self.path = Path(path)
        self.table = json.loads(run(["sfdisk", "--json", str(self.path)]).stdout)["partitiontable"]
        self.sector = self.table.get("sectorsize", 512)

    @property
    def parts(self):
        return self.table["partitions"]

    def offset(self, n):
        return self.parts[n - 1]["start"] * self.sector

    # --- FAT (partition 1) ---
    def fat(self):
        return f"{self.path}@@{self.offset(1)}"

    def fat_ls(self, path="::/"):
        out = run(["mdir", "-b", "-i", self.fat(), path], env=_mtools_env()).stdout
        return sorted(line.split("/")[-1] for line in out.splitlines() if line.strip())

    def fat_read(self, path):
        return run(["mtype", "-i", self.fat(), path], env=_mtools_env()).stdout

    # --- ext4 (partition 2) ---
    def ext(self):
        return f"{self.path}?offset={self.offset(2)}"

    def debugfs(self, request):
        # debugfs prints its banner on stderr and most errors there too.
        r = run(["debugfs", "-R", request, self.ext()])
        return r.stdout, r.stderr

    def ext_read(self, path):
        out, err = self.debugfs(f"cat {path}")
        if "File not found" in err:
            raise FileNotFoundError(path)
        return out

    def ext_stat(self, path):
        """(type, mode, uid, gid, link target or None) of a path, or None."""
        out, err = self.debugfs(f"stat {path}")
        if "File not found" in err or not out:
            return None
        first = out.splitlines()[0]  # Inode: N   Type: regular    Mode:  0755 ...
        fields = first.split()
        ftype = fields[fields.index("Type:") + 1]
        mode = fields[fields.index("Mode:") + 1]
        uid = gid = None
        target = None
        for line in out.splitlines():
            if line.startswith("User:"):
                parts = line.split()
                uid, gid = int(parts[1]), int(parts[3])
            if line.startswith("Fast link dest:"):
                target = line.split(":", 1)[1].strip().strip('"')
        if ftype == "symlink" and target is None:
            target = self.debugfs(f"readlink {path}")[0].strip() or None
        return ftype, mode, uid, gid, target

    def ext_ls(self, path):
        out, err = self.debugfs(f"ls -p {path}")
        names = []
        for line in out.splitlines():
            # /inode/mode/uid/gid/name/size/
            f = line.strip().strip("/").split("/")
            if len(f) >= 5 and f[4] not in (".", ".."):
                names.append(f[4])
        return sorted(names)


def _mtools_env():
    env = dict(os.environ)
    env["MTOOLS_SKIP_CHECK"] = "1"
    return env


@pytest.fixture(scope="session")
def disk(image):
    return Disk(image)


@pytest.fixture(scope="session")
def base_disk(base_image):
    return Disk(base_image)


@pytest.fixture(scope="session")
def halo_bin():
    """The host's halo (for `halo check` in `node`)."""
    env = os.environ.get("HALO_BIN")
    if env:
        return Path(env)
    for p in (ROOT / "target" / "release" / "halo", ROOT / "target" / "debug" / "halo"):
        if p.is_file():
            return p
    run(["cargo", "build", "--locked", "-p", "halo"], cwd=ROOT, capture_output=False)
    return ROOT / "target" / "debug" / "halo"


# --- booting cards in qemu (test_boot.py, test_pair.py) ---

BOOT_TIMEOUT = int(os.environ.get("HALO_IMAGE_BOOT_TIMEOUT", "1200"))
BOOT_FAILURES = [r"Failed to start .*halo", r"Kernel panic", r"Gave up waiting for root", r"halo-firstboot: ERROR"]
# The guest kernel saying one of its CPUs made no progress: under TCG that is
# the emulator starved, not the card. Seen once in CI (a 2-core machine,
# itself a VM): modprobe's module signature check (ECDSA), ~1 s here, took
# minutes per module, then the console fell silent until the 1200 s bound; the
# same card booted in ~100 s before and after. A boot that shows one is
# started again once from the same card (Console.boot); a card whose boot
# stalls for a reason of its own stalls the second time too and fails.
GUEST_STALLS = [r"watchdog: BUG: soft lockup", r"rcu: INFO: rcu_\w+ (?:self-)?detected stall"]
# systemd (PID 1) stopping for good: seen at load ~9, when the generators
# ran out of systemd's time for them ("Failed to fork off sandboxing
# environment for executing generators: Protocol error" first). Retried as
# a stall, but the second time it fails at once: such a boot never ends.
PID1_FROZEN = r"systemd\[1\]: Freezing execution"
# A first boot showing one of these is started again; the second one fails
# on these.
RESTART_ON = GUEST_STALLS + [PID1_FROZEN]
SECOND_BOOT_FAILURES = BOOT_FAILURES + [PID1_FROZEN]


class GuestStalled(Exception):
    """The console shows one of the patterns a boot is restarted on (RESTART_ON)."""


def qemu_binary():
    q = os.environ.get("HALO_QEMU") or shutil.which("qemu-system-aarch64")
    cached = TEST_CACHE / "qemu-system/root/usr/bin/qemu-system-aarch64"
    if not q and cached.is_file():
        q = str(cached)
    if not q:
        pytest.fail("qemu-system-aarch64 not found (bash tests/image/run.sh installs it)")
    return q


def ssh_keygen(path):
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "image-test", "-f", str(path)])
    return Path(path)


def make_card(img, *node_args):
    """`halo-image node NODE_ARGS IMG`: the card's halo/ settings."""
    run([str(HALO_IMAGE_TOOL), "node", *map(str, node_args), str(img)])


def boot_files(img, dest):
    """Kernel, initrd and command line from a card's boot partition, as the
    Pi firmware would take them; only the console is qemu's UART."""
    disk = Disk(img)
    files = disk.fat_ls()
    kernel_name = next(f for f in files if f.startswith("vmlinuz-"))
    initrd_name = next(f for f in files if f.startswith("initrd.img-"))
    for name in (kernel_name, initrd_name):
        run(["mcopy", "-n", "-i", disk.fat(), f"::/{name}", str(Path(dest) / name)], env=_mtools_env())
    cmdline = disk.fat_read("::/cmdline.txt").split()
    cmdline = [a for a in cmdline if not a.startswith("console=")] + ["console=ttyAMA0"]
    return Path(dest) / kernel_name, Path(dest) / initrd_name, " ".join(cmdline)


def card_overlay(image, overlay, workdir, *node_args, edit=None):
    """A card for one node without copying the image: a qcow2 overlay backed
    by the (unchanged) raw image, holding only what `halo-image node` changes.
    The node command runs on a raw copy of the MBR and boot partition (mtools
    cannot write into qcow2), then `edit(copy)` if given (what another tool,
    Raspberry Pi Imager say, writes onto the card); the blocks that differ
    from the image are then written into the overlay with qemu-io. Returns
    the copy (a raw image whose boot partition is the card's, for
    boot_files)."""
    workdir = Path(workdir)
    p1 = Disk(image).parts[0]
    end = (p1["start"] + p1["size"]) * 512
    head = workdir / "boot-part.img"
    run(["dd", f"if={image}", f"of={head}", "bs=1M", f"count={-(-end // (1 << 20))}", "conv=sparse", "status=none"])
    make_card(head, *node_args)
    if edit:
        edit(head)
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(Path(image).resolve()), str(overlay)])
    block = 64 * 1024
    cmds, chunk = [], 0
    with open(image, "rb") as a, open(head, "rb") as b:
        off = 0
        while off < end:
            x, y = a.read(block), b.read(block)
            if x != y:
                src = workdir / f"chunk{chunk}"
                src.write_bytes(y)
                cmds += ["-c", f"write -q -s {src} {off} {len(y)}"]
                chunk += 1
            off += block
    assert cmds, "halo-image node changed nothing on the card"
    run(["qemu-io", "-f", "qcow2", *cmds, str(overlay)])
    for n in range(chunk):
        (workdir / f"chunk{n}").unlink()
    return head


def qemu_command(kernel, initrd, cmdline, console, drive, net, smp=2, mem=1024):
    """qemu-system-aarch64 -M virt (TCG) booting a card's kernel and initrd;
    `drive` is the -drive value, `net` the network arguments."""
    return [
        qemu_binary(),
        "-M", "virt", "-cpu", "cortex-a72", "-smp", str(smp), "-m", str(mem),
        "-display", "none", "-monitor", "none", "-no-reboot",
        "-serial", f"file:{console}",
        "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline,
        "-drive", drive, *net,
    ]


class Console:
    """A booting VM seen through its serial console file. `proc` is qemu's
    Popen, `stderr` the file its output goes to."""

    def __init__(self, console, proc, stderr):
        self.console, self.proc, self.stderr = Path(console), proc, Path(stderr)

    def text(self):
        try:
            return self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def check(self, pattern, fail_patterns=(), stall_patterns=()):
        """The pattern's match on the console so far, or None; fails the test
        on a fail pattern or when qemu has exited; raises GuestStalled on a
        stall pattern."""
        text = self.text()
        m = re.search(pattern, text)
        if m:
            return m
        for bad in fail_patterns:
            if re.search(bad, text):
                pytest.fail(f"{self.console}: console shows {bad!r}:\n{self.tail()}")
        for stall in stall_patterns:
            if s := re.search(f".*{stall}.*", text):
                raise GuestStalled(s.group(0).strip())
        if self.proc.poll() is not None:
            try:
                err = self.stderr.read_text(errors="replace")
            except FileNotFoundError:
                err = ""
            pytest.fail(f"qemu exited with {self.proc.returncode}:\n{err}\n{self.tail()}")
        return None

    def wait_for(self, pattern, timeout, fail_patterns=(), stall_patterns=()):
        deadline = time.monotonic() + timeout
        while True:
            # Checked once more after the deadline: a line that came during
            # the last sleep counts.
            m = self.check(pattern, fail_patterns, stall_patterns)
            if m:
                return m
            if time.monotonic() > deadline:
                break
            time.sleep(2)
        pytest.fail(f"{self.console}: no {pattern!r} on the console after {timeout} s:\n{self.tail()}")

    def boot(self, start, pattern, timeout=BOOT_TIMEOUT):
        """`start()` the VM and wait for `pattern` on its console. When the
        guest reports a stall (RESTART_ON) before it, stop it, set its
        console aside, call `start()` once more and wait again (a stall then
        waits out the timeout: a guest that was only starved for a while
        still boots; a frozen PID 1 fails). `start` must boot the same card
        from its state before the first start. `self.started`: when the
        boot that is waited for was started (for boot times)."""
        self.started = time.monotonic()
        start()
        try:
            return self.wait_for(pattern, timeout, BOOT_FAILURES, RESTART_ON)
        except GuestStalled as e:
            self.stop()
            self.set_aside(e)
        self.started = time.monotonic()
        start()
        return self.wait_for(pattern, timeout, SECOND_BOOT_FAILURES)

    def set_aside(self, why):
        """Keep a stalled boot's console as console-stalled.log (the next
        start writes a new console.log)."""
        kept = self.console.with_name(f"{self.console.stem}-stalled.log")
        self.console.rename(kept)
        print(f"\n{kept}: the guest stalled ({why}); booting the same card once more")

    def stop(self):
        stop_process(self.proc)

    def tail(self, n=60):
        return "\n".join(self.text().splitlines()[-n:])


def stop_process(proc, timeout=10):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
