"""Fixtures for the ansible/ tests: the cached VM image, two halo packages
(the current one and a "next version"), and the four-host cluster on a
`halo lab` network."""

import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cluster import HERE, ROOT, Cluster, run  # noqa: E402


def halo_bin():
    b = os.environ.get("HALO_BIN")
    if b:
        return b
    for p in ("target/release/halo", "target/debug/halo"):
        if os.path.exists(os.path.join(ROOT, p)):
            return os.path.join(ROOT, p)
    run(["cargo", "build", "--release", "--locked", "-p", "halo"], cwd=ROOT, timeout=3600)
    return os.path.join(ROOT, "target/release/halo")


def needs(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.fail("missing tools: " + ", ".join(missing) + " (bash tests/ansible/run.sh installs them)")


@pytest.fixture(scope="session")
def debs(tmp_path_factory):
    """(old, new): halo_V_amd64.deb and halo_V+ansible2_amd64.deb.

    Both package the same source. So that the upgrade is a real one (dpkg
    replaces /usr/bin/halo, postinst sees a different binary and restarts
    halo instead of reloading it), the new one's binary carries an extra
    ELF section naming the build; the code is the same.
    """
    out = tmp_path_factory.mktemp("debs")
    bin_ = halo_bin()
    built = []
    for suffix in ("", "+ansible2"):
        b = out / f"halo{suffix or '-v1'}"
        shutil.copy(bin_, b)
        if suffix:
            note = out / "build-note"
            note.write_text(f"halo test build {suffix}\n")
            run(["objcopy", "--add-section", f".halo_build={note}", "--set-section-flags", ".halo_build=readonly", b, b])
        env = dict(os.environ, HALO_DEB_BIN=str(b), HALO_DEB_VERSION_SUFFIX=suffix)
        r = run(["bash", "daemon/debian/build-deb.sh", "amd64"], cwd=ROOT, env=env, timeout=600)
        # build-deb.sh prints the package it wrote last. (Not "the newest
        # halo_*.deb in target/debian": another stage or a student may be
        # building one there at the same time.)
        deb = os.path.join(ROOT, r.stdout.strip().splitlines()[-1])
        assert deb.endswith(f"{suffix}_amd64.deb") and os.path.isfile(deb), r.stdout
        dst = out / os.path.basename(deb)
        shutil.copy(deb, dst)
        built.append(str(dst))
    return built[0], built[1]


@pytest.fixture(scope="session")
def image():
    needs("mmdebstrap", "systemd-nspawn")
    r = subprocess.run(["bash", os.path.join(HERE, "build-image.sh")], capture_output=True, text=True, timeout=2400)
    if r.returncode != 0:
        pytest.fail("VM image build failed:\n" + r.stderr[-4000:])
    return r.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def cluster(image):
    needs("ansible-playbook", "ssh", "curl", "ip")
    # The network is `halo lab up` (tests/halolab.py), with this binary.
    os.environ.setdefault("HALO_BIN", halo_bin())
    with Cluster(image) as c:
        yield c
