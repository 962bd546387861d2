"""The aarch64 binary and the two .debs, checked from outside.

Size budget and --version under qemu for the cross-built binary; file list,
conffiles, control fields and lintian for the packages.
"""

import re
import subprocess

import pytest

from pkgtest import DEBIAN_DIR, cargo_version, deb_version, run

MAX_AARCH64_BYTES = 4 * 1024 * 1024
EM_AARCH64, EM_X86_64 = 183, 62


def elf_machine(path) -> int:
    with open(path, "rb") as f:
        head = f.read(20)
    assert head[:4] == b"\x7fELF", f"{path} is not ELF"
    return int.from_bytes(head[18:20], "little")


def test_aarch64_binary_is_stripped_and_within_budget(aarch64_bin):
    assert elf_machine(aarch64_bin) == EM_AARCH64
    sections = run(["readelf", "-S", "-W", str(aarch64_bin)]).stdout
    assert ".symtab" not in sections and ".debug_info" not in sections, "not stripped"
    size = aarch64_bin.stat().st_size
    print(f"stripped aarch64 release binary: {size} bytes ({size / 2**20:.2f} MiB)")
    assert size <= MAX_AARCH64_BYTES


def test_aarch64_binary_runs_under_qemu(aarch64_bin):
    out = run(["qemu-aarch64-static", str(aarch64_bin), "--version"]).stdout
    assert out.strip() == f"halo {cargo_version()}"


def deb_field(deb, field) -> str:
    return run(["dpkg-deb", "--field", str(deb), field]).stdout.strip()


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_deb_layout(arch, request):
    deb = request.getfixturevalue(f"deb_{arch}")
    assert deb.name == f"halo_{deb_version()}_{arch}.deb"
    assert deb_field(deb, "Package") == "halo"
    assert deb_field(deb, "Version") == deb_version()
    assert deb_field(deb, "Architecture") == arch
    depends = deb_field(deb, "Depends")
    for dep in ("libc6 (>=", "adduser", "init-system-helpers"):
        assert dep in depends, depends

    listing = run(["dpkg-deb", "--contents", str(deb)]).stdout
    files = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    for path in [
        "/usr/bin/halo",
        "/lib/systemd/system/halo.service",
        "/etc/halo/halo.toml",
        "/usr/share/doc/halo/copyright",
        "/usr/share/doc/halo/changelog.gz",
        "/usr/share/man/man1/halo.1.gz",
    ]:
        assert path in files, path
    assert re.search(r"^-rwxr-xr-x root/root .* \./usr/bin/halo$", listing, re.M), listing

    conffiles = subprocess.run(
        ["dpkg-deb", "--info", str(deb), "conffiles"], capture_output=True, text=True, check=True
    ).stdout
    assert conffiles.split() == ["/etc/halo/halo.toml"]

    tar = subprocess.run(f"dpkg-deb --fsys-tarfile '{deb}' | tar -xO ./usr/bin/halo", shell=True, capture_output=True, check=True)
    machine = int.from_bytes(tar.stdout[18:20], "little")
    assert machine == (EM_X86_64 if arch == "amd64" else EM_AARCH64)


def test_lintian_clean(deb_amd64, deb_arm64, deb_amd64_upgrade):
    # Errors and warnings fail; pedantic and info tags are shown for the log.
    # Every override in daemon/debian/halo.lintian-overrides has its reason.
    p = subprocess.run(
        [
            "lintian",
            "--pedantic",
            "--display-info",
            "--fail-on",
            "error,warning",
            str(deb_amd64),
            str(deb_arm64),
            str(deb_amd64_upgrade),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(p.stdout)
    assert p.returncode == 0, p.stdout + p.stderr
    assert not re.search(r"^[EW]: ", p.stdout, re.M), p.stdout


def test_every_lintian_override_is_explained():
    lines = (DEBIAN_DIR / "halo.lintian-overrides").read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert i > 0 and lines[i - 1].startswith("#"), f"override without a comment: {line}"
