"""The .debs in real bookworm chroots: install, upgrade, remove, purge.

amd64 runs natively; arm64 runs through qemu-user binfmt (run.sh enables
it). Services are never started: the chroot's policy-rc.d refuses, and the
tests check that the maintainer scripts asked for the right actions.
"""

import pytest

from pkgtest import UPGRADE_SUFFIX, deb_version

UNIT_LINK = "/etc/systemd/system/multi-user.target.wants/halo.service"


def assert_installed(c, version):
    status = c.sh("dpkg-query -W -f '${Status} ${Version}' halo").stdout
    assert status == f"install ok installed {version}"
    assert c.sh("/usr/bin/halo --version").stdout.strip() == f"halo {deb_version()}"
    # The halo system user and group from postinst: no login, no home.
    user = c.sh("getent passwd halo").stdout.strip().split(":")
    assert user[0] == "halo" and int(user[2]) < 1000, user
    assert user[5] == "/nonexistent" and user[6] == "/usr/sbin/nologin", user
    assert c.sh("getent group halo").stdout.startswith("halo:")
    assert not c.exists("/nonexistent")
    # Enabled the Debian way: deb-systemd-helper made the WantedBy link.
    assert c.exists(UNIT_LINK)
    assert c.exists("/lib/systemd/system/halo.service")
    # The conffile is readable by root and halo only (it may hold auth_pass).
    assert c.sh("stat -c '%U:%G %a' /etc/halo /etc/halo/halo.toml").stdout.split("\n")[:2] == [
        "root:halo 750",
        "root:halo 640",
    ]
    conffiles = c.sh("dpkg-query -W -f '${Conffiles}' halo").stdout
    assert "/etc/halo/halo.toml" in conffiles


def test_amd64_install_and_check_example(chroot_factory, deb_amd64):
    c = chroot_factory("amd64")
    c.install(deb_amd64)
    assert_installed(c, deb_version())
    # postinst asked to start the unit, and policy-rc.d refused.
    assert c.policy_log() == ["halo.service start"]
    # The shipped example must be a config halo accepts.
    check = c.sh("halo check --config /etc/halo/halo.toml", check=False)
    if "config parsing not implemented yet" in check.stderr:
        pytest.skip("halo check: config parsing has not landed in this build")
    assert check.returncode == 0, check.stderr
    assert "OK" in check.stdout


def test_amd64_upgrade_over_itself_keeps_admin_edits(chroot_factory, deb_amd64, deb_amd64_upgrade):
    c = chroot_factory("amd64")
    c.install(deb_amd64)
    # An admin edit of the conffile must survive an upgrade that does not
    # change the shipped file (dpkg keeps it without prompting).
    c.sh("echo '# edited by the admin' >> /etc/halo/halo.toml")
    uid = c.sh("id -u halo").stdout
    c.install(deb_amd64_upgrade)
    assert_installed(c, deb_version(UPGRADE_SUFFIX))
    assert c.sh("tail -n1 /etc/halo/halo.toml").stdout.strip() == "# edited by the admin"
    assert not c.exists("/etc/halo/halo.toml.dpkg-new")
    assert c.sh("id -u halo").stdout == uid, "upgrade must keep the halo user"
    # Upgrade: no stop in prerm (the VIP stays put while unpacking), then a
    # reload or restart of a running unit only; never a fresh start.
    log = c.policy_log()
    assert log[0] == "halo.service start"
    assert log[1:] in (["halo.service try-restart"], ["halo.service try-reload-or-restart"]), log


def test_amd64_remove_keeps_config_and_purge_removes_everything(chroot_factory, deb_amd64, deb_amd64_upgrade):
    c = chroot_factory("amd64")
    c.install(deb_amd64)
    c.install(deb_amd64_upgrade)

    c.sh("dpkg --remove halo")
    assert not c.exists("/usr/bin/halo")
    assert not c.exists("/lib/systemd/system/halo.service")
    assert c.exists("/etc/halo/halo.toml"), "remove must keep the config"
    assert c.sh("getent passwd halo", check=False).returncode == 0, "remove must keep the user"
    assert c.policy_log()[-1] == "halo.service stop"

    c.sh("dpkg --purge halo")
    assert c.sh("dpkg-query -W -f '${Status}' halo", check=False).stdout in ("", "unknown ok not-installed")
    assert not c.exists("/etc/halo")
    assert c.sh("getent passwd halo", check=False).returncode == 2
    assert c.sh("getent group halo", check=False).returncode == 2
    assert not c.exists(UNIT_LINK)
    assert not c.exists("/var/lib/systemd/deb-systemd-helper-enabled/halo.service.dsh-also")
    leftovers = c.sh("ls /var/lib/dpkg/info | grep '^halo\\.' || true").stdout
    assert leftovers == "", leftovers


def test_arm64_installs_and_runs_under_qemu_binfmt(chroot_factory, deb_arm64):
    c = chroot_factory("arm64")
    assert c.sh("dpkg --print-architecture").stdout.strip() == "arm64"
    c.install(deb_arm64)
    assert_installed(c, deb_version())
    # ELF e_machine 183 = EM_AARCH64: qemu really ran an arm64 binary.
    with open(c.root / "usr/bin/halo", "rb") as f:
        assert int.from_bytes(f.read(20)[18:20], "little") == 183
    out = c.sh("halo --help").stdout
    assert "run" in out and "check" in out
