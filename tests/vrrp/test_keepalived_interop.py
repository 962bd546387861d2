"""Interop with Debian's keepalived as the other VRRP router.

halo and keepalived share one bridge (inside namespaces). For v3 and for
v2 with PASS authentication, over multicast and unicast, in both roles:
after convergence exactly one node holds the VIP, the one with the higher
priority, and when it stops cleanly the other takes the VIP.
"""

import os
import shutil
import signal
import tempfile

import pytest

from netns import Topology, halo_bin, wait_for

VIP = "192.0.2.100"
HALO_IP, KA_IP = "192.0.2.11", "192.0.2.12"


def halo_cfg(prio, version, unicast):
    extra = ""
    if version == 2:
        extra += 'auth_pass = "s3cretpw"\n'
    if unicast:
        extra += f'unicast_peers = ["{KA_IP}"]\n'
    return f"""
[vrrp.VI_1]
interface = "eth0"
vrid = 51
version = {version}
priority = {prio}
advert_interval = "1s"
virtual_ips = ["{VIP}/24"]
{extra}"""


def keepalived_cfg(prio, version, unicast):
    auth = ""
    if version == 2:
        auth = "authentication {\n    auth_type PASS\n    auth_pass s3cretpw\n  }"
    uni = ""
    if unicast:
        uni = f"unicast_src_ip {KA_IP}\n  unicast_peer {{\n    {HALO_IP}\n  }}"
    return f"""
global_defs {{
  router_id ka
  vrrp_version {version}
  script_user root
  enable_script_security
}}
vrrp_instance VI_1 {{
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority {prio}
  advert_int 1
  {auth}
  {uni}
  virtual_ipaddress {{
    {VIP}/24
  }}
}}
"""


CASES = [
    (version, unicast, halo_master)
    for version in (3, 2)
    for unicast in (False, True)
    for halo_master in (True, False)
]


@pytest.mark.parametrize(
    "version,unicast,halo_master",
    CASES,
    ids=[f"v{v}-{'unicast' if u else 'multicast'}-{'halo' if h else 'keepalived'}-master" for v, u, h in CASES],
)
def test_interop(version, unicast, halo_master):
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    ka = shutil.which("keepalived") or "/usr/sbin/keepalived"
    assert os.path.exists(ka), "keepalived is installed by tests/lib/install-deps.sh"
    hp, kp = (110, 100) if halo_master else (100, 110)
    with tempfile.TemporaryDirectory(prefix="halo-ka-") as tmp, Topology("ka") as t:
        t.switch()
        t.host("halo", HALO_IP + "/24")
        t.host("ka", KA_IP + "/24")
        hc = os.path.join(tmp, "halo.toml")
        with open(hc, "w") as f:
            f.write(halo_cfg(hp, version, unicast))
        kc = os.path.join(tmp, "keepalived.conf")
        with open(kc, "w") as f:
            f.write(keepalived_cfg(kp, version, unicast))
        t.spawn("halo", "halo", [halo_bin(), "run", "--config", hc, "--socket", os.path.join(tmp, "halo.sock")], logdir=tmp)
        t.spawn(
            "ka",
            "ka",
            [ka, "--dont-fork", "--log-console", "--log-detail", "--vrrp",
             "-f", kc, "-p", os.path.join(tmp, "ka.pid"),
             "-r", os.path.join(tmp, "vrrp.pid"), "-c", os.path.join(tmp, "chk.pid")],
            logdir=tmp,
        )
        winner, loser = ("halo", "ka") if halo_master else ("ka", "halo")

        def converged():
            h = t.holders(["halo", "ka"], VIP)
            return h == [winner]

        try:
            wait_for(converged, 15, f"{winner} as the only VIP holder")
            # Stay converged: no flapping between two different implementations.
            import time
            time.sleep(3)
            assert t.holders(["halo", "ka"], VIP) == [winner]
            t.stop(winner, signal.SIGTERM)
            wait_for(lambda: t.holders(["halo", "ka"], VIP) == [loser], 10, f"{loser} to take over")
        except AssertionError:
            print("--- halo log ---\n" + t.log("halo"))
            print("--- keepalived log ---\n" + t.log("ka"))
            raise
