"""A proxy with no healthy server lowers the VRRP priority, the VIP moves,
and it comes back when a server does; meanwhile the proxy answers 503.

lb1 (priority 150) tracks its proxy with weight -60; lb2 (priority 100)
does not track. One real nginx: the lab's web1 (`/` a page, `/health` 200).
All inside the lab's namespaces on one bridge (tests/halolab.py).
"""

import os

import pytest

from halolab import VIP, WEB, Lab, vrrp_toml, wait_for

# Upper bounds only; generous for a loaded 2-core machine.
T = 30


def halo_conf(prio, track):
    t = 'track = [{ proxy = "web", weight = -60 }]' if track else ""
    return vrrp_toml(prio, extra=t) + f"""
[proxy.web]
bind = ["{VIP}:80"]
servers = [{{ name = "web1", address = "{WEB['web1']}:80" }}]

[proxy.web.health]
path = "/health"
interval = "200ms"
timeout = "100ms"
rise = 2
fall = 2
"""


def test_no_healthy_server_moves_the_vip_and_answers_503():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    with Lab("tp", lbs=2, backends=1) as lab:
        lab.start("web1")
        for name, prio, track in (("lb1", 150, True), ("lb2", 100, False)):
            lab.run_halo(name, halo_conf(prio, track))

        def get():
            r = lab.exec("client", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "2",
                         f"http://{VIP}/", check=False)
            return r.stdout.strip()

        try:
            wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 master")
            wait_for(lambda: get() == "200", T, "a page through the VIP")
            # At start-up web1 is DOWN until its first checks: lb1 may have
            # logged the lowered priority then. Only what follows counts.
            mark = lab.log_mark("lb1")
            lab.kill("web1")  # SIGKILL, and waits until nginx is gone
            # lb1: 150 - 60 = 90 < lb2's 100: lb2 preempts.
            wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb2"], T, "lb2 to take the VIP")
            log = lab.log("lb1", since=mark)
            assert "90 = 150 - 60 (track web: no healthy server)" in log, log
            # lb2 checks web1 on its own schedule: it may take the VIP before
            # it has seen web1 fail (a 502 then); then it answers 503.
            wait_for(lambda: get() == "503", T, "503 through lb2 (no healthy server)")
            lab.start("web1")
            wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 back as master")
            wait_for(lambda: get() == "200", T, "pages again")
        except AssertionError:
            print(lab.log("lb1"))
            raise
