"""Helpers for the packaging tests: the built artefacts and mmdebstrap chroots.

(A module of its own, not conftest.py, so that `from pkgtest import ...`
cannot pick up another test area's conftest in a combined pytest run.)

tests/packaging/run.sh builds everything first (aarch64 binary, the three
.debs); run alone, `python3 -m pytest tests/packaging` builds what is missing
through the same scripts. Chroots are Debian bookworm made by mmdebstrap from
Debian's mirror, cached as tarballs under $HALO_TEST_CACHE
(/var/cache/halo-tests) keyed by suite, architecture, variant, package list
and mirror, and unpacked afresh for every test. Nothing is mounted inside
them, so removing the directory is the whole cleanup.
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_DIR = ROOT / "daemon" / "debian"
OUT = ROOT / "target" / "debian"
AARCH64_BIN = ROOT / "target" / "aarch64-unknown-linux-gnu" / "release" / "halo"
CACHE = Path(os.environ.get("HALO_TEST_CACHE", "/var/cache/halo-tests"))
MIRROR = os.environ.get("HALO_TEST_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
# The essential set plus halo's own Depends: dpkg -i then needs no network.
VARIANT = "essential"
INCLUDE = ("adduser", "init-system-helpers")
UPGRADE_SUFFIX = "+test1"


def cargo_version() -> str:
    with open(ROOT / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["workspace"]["package"]["version"]


def deb_version(suffix: str = "") -> str:
    # build-deb.sh: a semver pre-release "-rc.1" becomes "~rc.1".
    return cargo_version().replace("-", "~", 1) + suffix


def run(cmd, timeout=600, check=True, **kw):
    """Run a command, capturing text output; on failure show all of it."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} exited {p.returncode}\n"
            f"--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"
        )
    return p


def aarch64_binary() -> Path:
    path = Path(os.environ.get("HALO_AARCH64_BIN", AARCH64_BIN))
    if not path.exists():
        run(["bash", str(DEBIAN_DIR / "build-aarch64.sh"), "build"], timeout=1800)
    assert path.exists(), f"build-aarch64.sh did not produce {path}"
    return path


def build_deb(arch: str, suffix: str = "") -> Path:
    path = OUT / f"halo_{deb_version(suffix)}_{arch}.deb"
    if not path.exists():
        env = dict(os.environ, HALO_DEB_VERSION_SUFFIX=suffix)
        run(["bash", str(DEBIAN_DIR / "build-deb.sh"), arch], timeout=1800, env=env)
    assert path.exists(), f"build-deb.sh did not produce {path}"
    return path


def rootfs_tarball(arch: str, variant: str = VARIANT) -> Path:
    """A cached mmdebstrap tarball of bookworm for `arch`; made if missing.

    `variant` "essential" (the default: dpkg, no apt) for the package tests;
    "apt" for the tests of tests/lib/apt.sh, which runs apt-get."""
    spec = f"{SUITE} {arch} {variant} {','.join(sorted(INCLUDE))} {MIRROR}"
    key = hashlib.sha256(spec.encode()).hexdigest()[:16]
    path = CACHE / f"{SUITE}-{arch}-{variant}-{key}.tar"
    if path.is_file():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    # One build at a time (tests/lib/prebuild.sh may be making it in the
    # background while the integration tests run): a second caller waits on
    # the lock, then finds the tarball.
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():
            return path
        _bootstrap(arch, variant, path)
    return path


def _bootstrap(arch: str, variant: str, path: Path):
    # mmdebstrap picks its output format from the name: keep ".tar" last.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tar")
    cmd = [
        "mmdebstrap",
        "--quiet",
        "--format=tar",
        f"--variant={variant}",
        f"--arch={arch}",
        f"--include={','.join(INCLUDE)}",
        # apt's own retries for a download that fails for a moment.
        '--aptopt=Acquire::Retries "5"',
        SUITE,
        str(tmp),
        MIRROR,
    ]
    try:
        # A cold cache downloads the whole essential set from the mirror (and
        # arm64's runs its maintainer scripts under qemu-user): generous
        # bounds, and the whole bootstrap tried again when it fails anyway
        # (a mirror mid-sync). Nothing but the download differs between tries.
        for attempt in range(1, 4):
            try:
                run(cmd, timeout=2400)
                break
            except AssertionError as e:  # exited non-zero (a hang is not retried)
                tmp.unlink(missing_ok=True)
                if attempt == 3:
                    raise
                print(f"mmdebstrap {arch} failed (try {attempt} of 3), trying again: {str(e)[-2000:]}")
                time.sleep(30 * attempt)
        tmp.rename(path)
    finally:
        tmp.unlink(missing_ok=True)


# policy-rc.d as Debian defines it (/usr/share/doc/init-system-helpers/
# README.policy-rc.d): 101 = action forbidden. This one also records what the
# maintainer scripts asked for, so the tests can check it.
POLICY_RC_D = """#!/bin/sh
echo "$*" >> /var/log/policy-rc.d.log
exit 101
"""


class Chroot:
    """A bookworm tree unpacked from the cached tarball, used through chroot(8)."""

    def __init__(self, arch: str, where: Path, variant: str = VARIANT):
        self.arch = arch
        self.root = where / f"chroot-{arch}-{variant}"
        self.root.mkdir()
        try:
            run(["tar", "-xf", str(rootfs_tarball(arch, variant)), "-C", str(self.root)], timeout=300)
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        policy = self.root / "usr/sbin/policy-rc.d"
        policy.write_text(POLICY_RC_D)
        policy.chmod(0o755)
        # Make the maintainer scripts take their "systemd is running" branch:
        # every start/stop/reload then goes through deb-systemd-invoke, which
        # asks policy-rc.d and is refused, as in any Debian chroot build.
        (self.root / "run/systemd/system").mkdir(parents=True, exist_ok=True)

    def sh(self, script: str, check=True, timeout=600):
        return run(["chroot", str(self.root), "/bin/sh", "-ec", script], check=check, timeout=timeout)

    def install(self, deb: Path):
        shutil.copy(deb, self.root / "tmp" / deb.name)
        return self.sh(f"dpkg -i /tmp/{deb.name}")

    def exists(self, path: str) -> bool:
        return os.path.lexists(self.root / path.lstrip("/"))

    def policy_log(self) -> list[str]:
        log = self.root / "var/log/policy-rc.d.log"
        return log.read_text().splitlines() if log.exists() else []

    def remove(self):
        # Refuse to delete through a mount point (there should be none).
        for dirpath, dirnames, _ in os.walk(self.root):
            for d in dirnames:
                if os.path.ismount(os.path.join(dirpath, d)):
                    raise RuntimeError(f"{dirpath}/{d} is mounted; not removing {self.root}")
        shutil.rmtree(self.root)


if __name__ == "__main__":
    # `python3 tests/packaging/pkgtest.py rootfs amd64 arm64 amd64:apt`: make
    # the chroot tarballs ahead of the tests (tests/lib/prebuild.sh).
    import sys

    if len(sys.argv) < 3 or sys.argv[1] != "rootfs":
        sys.exit("usage: pkgtest.py rootfs ARCH[:VARIANT]...")
    for a in sys.argv[2:]:
        arch, _, variant = a.partition(":")
        print(rootfs_tarball(arch, variant or VARIANT))
