"""halo.service as shipped in the .deb: systemd's own checks.

systemd-analyze runs offline (this may be a container without systemd as
PID 1): `verify` against a scratch root holding the package's files and the
host's stock units, and `security --offline=yes` for the exposure score.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pkgtest import run

MAX_EXPOSURE = 2.0


@pytest.fixture(scope="module")
def unit_root(deb_amd64, tmp_path_factory):
    root = tmp_path_factory.mktemp("unit-root")
    run(["dpkg-deb", "-x", str(deb_amd64), str(root)])
    # verify resolves After=/WantedBy= targets and ExecReload's /bin/kill
    # inside --root, so give it the host's stock units and kill(1).
    units = root / "lib/systemd/system"
    for f in sorted(Path("/lib/systemd/system").glob("*.target")):
        if not (units / f.name).exists():
            shutil.copy(f, units / f.name, follow_symlinks=False)
    (root / "bin").mkdir(exist_ok=True)
    shutil.copy("/bin/kill", root / "bin/kill")
    return root


def unit_settings(root):
    """[Service] key -> list of values, in file order."""
    settings, section = {}, None
    for line in (root / "lib/systemd/system/halo.service").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        settings.setdefault((section, key), []).append(value)
    return settings


def test_systemd_analyze_verify(unit_root):
    p = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={unit_root}", "/lib/systemd/system/halo.service"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    # verify returns 0 with some complaints printed; halo's unit has none.
    assert p.stderr.strip() == "", p.stderr


def test_security_exposure_at_most_2(unit_root):
    p = run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit_root / "lib/systemd/system/halo.service")])
    m = re.search(r"Overall exposure level for halo\.service: (\d+\.\d+)", p.stdout)
    assert m, p.stdout
    exposure = float(m.group(1))
    print(f"systemd-analyze security exposure: {exposure}")
    assert exposure <= MAX_EXPOSURE, p.stdout


def test_unit_runs_halo_as_designed(unit_root):
    s = unit_settings(unit_root)
    svc = "[Service]"
    assert s[(svc, "Type")] == ["notify"]
    assert s[(svc, "ExecStart")] == ["/usr/bin/halo run --config /etc/halo/halo.toml"]
    assert s[(svc, "ExecReload")] == ["/bin/kill -HUP $MAINPID"]
    assert s[(svc, "User")] == ["halo"]
    assert s[(svc, "RuntimeDirectory")] == ["halo"]
    # A release (/run/halo/release-NAME) outlives a restart of halo.
    assert s[(svc, "RuntimeDirectoryPreserve")] == ["yes"]
    # halo pings while every part makes progress (tests/ops/test_watchdog.py).
    assert s[(svc, "WatchdogSec")] == ["20s"]
    caps = {"CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"}
    assert set(s[(svc, "AmbientCapabilities")][0].split()) == caps
    assert set(s[(svc, "CapabilityBoundingSet")][0].split()) == caps
    # The VRRP thread's SCHED_RR 10, or nice -10, without CAP_SYS_NICE
    # (run/priority.rs).
    assert s[(svc, "LimitRTPRIO")] == ["10"]
    assert s[(svc, "LimitNICE")] == ["-10"]
    assert set(s[(svc, "RestrictAddressFamilies")][0].split()) == {
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
        "AF_NETLINK",
        "AF_PACKET",
    }
    for key in [
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "LockPersonality",
        "MemoryDenyWriteExecute",
        "RestrictNamespaces",
        "RestrictSUIDSGID",
    ]:
        assert s[(svc, key)] == ["yes"], key
    assert s[(svc, "ProtectSystem")] == ["strict"]
    assert s[(svc, "SystemCallArchitectures")] == ["native"]
    assert "@system-service" in s[(svc, "SystemCallFilter")]
    # The VRRP thread's SCHED_RR (run/priority.rs): not restricted, and its
    # two calls allowed again after `~@privileged @resources`.
    assert (svc, "RestrictRealtime") not in s
    assert s[(svc, "SystemCallFilter")][-1] == "setpriority sched_setscheduler"
    assert s[("[Install]", "WantedBy")] == ["multi-user.target"]
