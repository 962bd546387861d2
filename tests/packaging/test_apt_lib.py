"""tests/lib/apt.sh, which installs every stage's packages, on a fresh Debian.

A fresh Debian 12 knows only its own architecture. The image stage lists
`libc6:arm64` (tests/image/apt-packages.txt), and tests/lib/install-deps.sh,
the README test command's first step, installs every stage's list at once:
on a fresh machine apt-get answered "Unable to locate package libc6:arm64"
and the whole suite stopped there (machines that had run the packaging
stage before had the architecture already). Here a fresh bookworm (mmdebstrap's
`apt` variant) runs `install_listed` on such a list, as install-deps.sh does.
Needs the Debian mirror, as the other chroot tests do.
"""

import shutil

from pkgtest import ROOT


def test_install_listed_adds_the_architecture_of_a_package_named_with_one(chroot_factory):
    c = chroot_factory("amd64", "apt")
    assert c.sh("dpkg --print-foreign-architectures").stdout.strip() == ""
    lib = c.root / "tmp/lib"
    lib.mkdir()
    for name in ("apt.sh", "apt.conf"):
        shutil.copy(ROOT / "tests/lib" / name, lib / name)
    (c.root / "tmp/list.txt").write_text("# a comment, as in the real lists\nlibc6:arm64\n")
    # Name resolution for apt inside the chroot: the host's.
    shutil.copy("/etc/resolv.conf", c.root / "etc/resolv.conf")
    out = c.sh(
        "bash -c '. /tmp/lib/apt.sh && install_listed fresh /tmp/list.txt'",
        check=False,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "arm64" in c.sh("dpkg --print-foreign-architectures").stdout.split()
    status = c.sh("dpkg-query -W -f '${Status}' libc6:arm64").stdout
    assert status == "install ok installed", status
    # Idempotent, as install-deps.sh promises: a second run finds nothing to do.
    again = c.sh("bash -c '. /tmp/lib/apt.sh && install_listed fresh /tmp/list.txt'")
    assert "installing" not in again.stdout + again.stderr
