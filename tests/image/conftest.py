"""Helpers for the image tests: find the built images and read their
partitions without mounting (sfdisk --json, mtools at an offset, debugfs with
e2fsprogs' `?offset=` device syntax)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("HALO_IMAGE_OUT", ROOT / "build" / "image"))
HALO_IMAGE_TOOL = ROOT / "image" / "halo-image"
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
