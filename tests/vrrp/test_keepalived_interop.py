"""Interop with Debian's keepalived as the other VRRP router.

halo (lb1) and keepalived (lb2) share one bridge in a `halo lab` (inside
namespaces). For v3 and for v2 with PASS authentication, over multicast and
unicast, in both roles: after convergence exactly one node holds the VIP,
the one with the higher priority, and when it stops cleanly the other takes
the VIP.
"""

import os
import shutil

import pytest

from halolab import LB, VIP, Lab, always_until, vrrp_toml, wait_for

# Upper bounds only: at 1 s adverts an election takes 3.6 s and more.
T = 60

HALO, KA = "lb1", "lb2"
HALO_IP, KA_IP = LB[HALO], LB[KA]


def halo_cfg(prio, version, unicast):
    extra = ""
    if version == 2:
        extra += 'auth_pass = "s3cretpw"\n'
    if unicast:
        extra += f'unicast_peers = ["{KA_IP}"]\n'
    return vrrp_toml(prio, "1s", extra, version=version)


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
    with Lab("ka", lbs=2, backends=0) as lab:
        lab.write(HALO, "halo.toml", halo_cfg(hp, version, unicast))
        # keepalived only on its node: `halo lab start` runs keepalived from
        # keepalived.conf, and halo only where there is a halo.toml.
        try:
            os.remove(lab.path(KA, "halo.toml"))
        except FileNotFoundError:
            pass
        lab.write(KA, "keepalived.conf", keepalived_cfg(kp, version, unicast))
        lab.start(HALO)
        lab.start(KA)
        winner, loser = (HALO, KA) if halo_master else (KA, HALO)

        def converged():
            h = lab.holders([HALO, KA], VIP)
            return h == [winner]

        def adverts():
            # What halo counts of the exchange: adverts it sent as the
            # winner, adverts it heard from keepalived as the loser.
            v = lab.vrrp(HALO)
            return -1 if v is None else v["adverts_sent" if halo_master else "adverts_received"]

        def settled():
            # Both time out about together (1 s adverts, 39 ms of skew
            # apart): the loser may be master for a moment after the VIP
            # was seen on the winner alone. halo as the loser says when it
            # is BACKUP of keepalived; keepalived as the loser has heard
            # halo once halo has sent two more adverts.
            if not halo_master:
                v = lab.vrrp(HALO)
                return v is not None and v["state"] == "BACKUP" and v["master"] == KA_IP
            return adverts() >= first + 2

        try:
            wait_for(converged, T, f"{winner} as the only VIP holder")
            first = adverts()
            wait_for(settled, T, "the election to be over")
            wait_for(converged, T, f"{winner} as the only VIP holder")
            # Stay converged: no flapping between two different
            # implementations, over three adverts (counted, not slept).
            start = adverts()
            assert start >= 0, "halo does not answer on its control socket"
            always_until(converged, lambda: adverts() >= start + 3, T, f"{winner} the only VIP holder")
            lab.stop(winner)
            wait_for(lambda: lab.holders([HALO, KA], VIP) == [loser], T, f"{loser} to take over")
        except (AssertionError, RuntimeError):
            # RuntimeError: a `halo lab` command (stop) failed.
            print("--- halo log ---\n" + lab.log(HALO))
            print("--- keepalived log ---\n" + lab.log(KA, "keepalived"))
            raise
