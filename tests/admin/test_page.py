"""The live status page in headless Debian chromium, with real VRRP.

Two halos in a lab's network namespaces (tests/halolab.py; the bridge has
its own namespace, nothing touches the root namespace): lb1 (priority
150, proxying to the lab's two nginx backends web1 and web2) becomes
MASTER, lb2 (priority 100) BACKUP. Chromium runs inside each LB's
namespace against the admin listener on that namespace's loopback, and
the dumped DOM must show the state, the explanation, the peer and the
server states; after one nginx is stopped the page must show that server
DOWN. Screenshots are kept under target/test-artifacts/.
"""

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from adminfix import ARTIFACTS, Halo, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from halolab import WEB, Lab  # noqa: E402

CHROMIUM = shutil.which("chromium")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="VRRP in namespaces needs root"),
    pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium is not installed"),
]

ADMIN = 8404


def vrrp_section(priority, track):
    lines = [
        "[vrrp.VI_1]",
        'interface = "eth0"',
        "vrid = 51",
        "version = 3",
        f"priority = {priority}",
        'advert_interval = "100ms"',
        'virtual_ips = ["192.0.2.100/24"]',
    ]
    if track:
        lines.append('track = [{ proxy = "web", weight = -60 }]')
    return lines


def proxy_section(backends):
    lines = ['[proxy.web]', 'bind = ["127.0.0.1:8080"]', 'io = "epoll"', "workers = 1", "servers = ["]
    lines += [f'  {{ name = "{b}", address = "{WEB[b]}:80" }},' for b in backends]
    lines += [
        "]",
        "[proxy.web.health]",
        'type = "http"',
        'path = "/health"',
        # Chromium starting on a small machine must not make a healthy
        # nginx miss a check and flap DOWN in the page: a generous timeout
        # and three failures; a stopped nginx still goes DOWN in about a second.
        'interval = "1s"',
        'fast_interval = "200ms"',
        'timeout = "1s"',
        "rise = 1",
        "fall = 3",
    ]
    return lines


def in_node(lab, node):
    return ["ip", "netns", "exec", lab.ns(node)]


def chromium(lab, host, tmp, shot=None, budget=3000):
    """The page's DOM after `budget` ms of virtual time (and a screenshot)."""
    prof = tmp / f"chromium-{host}"
    prof.mkdir(exist_ok=True)
    base = [
        *in_node(lab, host), CHROMIUM,
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={prof}", "--window-size=1200,900", f"--virtual-time-budget={budget}",
    ]
    url = f"http://127.0.0.1:{ADMIN}/"
    env = dict(os.environ, HOME=str(prof))
    r = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True, timeout=90, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    if shot:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / shot
        s = subprocess.run(base + [f"--screenshot={path}", url], capture_output=True, text=True, timeout=90, env=env)
        assert s.returncode == 0 and path.exists() and path.stat().st_size > 1000, s.stderr[-2000:]
    return r.stdout


def server_states(dom):
    return dict(re.findall(r'data-server="web/([^"]+)" data-state="([A-Z]+)"', dom))


def vrrp_state(dom):
    m = re.search(r'id="vrrp-state-VI_1" data-state="([A-Z]+)"', dom) or re.search(
        r'data-state="([A-Z]+)"[^>]*id="vrrp-state-VI_1"', dom
    )
    return m and m.group(1)


def test_page_shows_master_backup_and_a_server_going_down():
    with Lab("adm", lbs=2, backends=2) as lab:
        tmp = Path(lab.dir)
        backends = ["web1", "web2"]
        halos = []
        try:
            for b in backends:
                lab.start(b)
            # Each halo in its LB's directory (halo.toml, halo.sock,
            # halo.log there, as `halo lab start` has them), run by the test.
            lb1 = Halo(tmp / "lb1", vrrp_section(150, True) + [""] + proxy_section(backends), admin_port=ADMIN,
                       wrap=in_node(lab, "lb1"))
            lb2 = Halo(tmp / "lb2", vrrp_section(100, False), admin_port=ADMIN, wrap=in_node(lab, "lb2"))
            halos = [lb1.start(wait=False), lb2.start(wait=False)]

            def state(h):
                try:
                    return h.status_cli()["vrrp"][0]["state"]
                except (AssertionError, IndexError, KeyError, ValueError):
                    assert h.proc.poll() is None, h.log()
                    return None

            wait_for(lambda: state(lb1) == "MASTER" and state(lb2) == "BACKUP", 60, "lb1 MASTER, lb2 BACKUP")
            wait_for(
                lambda: all(s["healthy"] and s["checked"] for s in lb1.status_cli()["proxy"][0]["servers"]),
                60,
                "both backends up",
            )
            wait_for(lambda: lb2.status_cli()["vrrp"][0]["peers"], 60, "lb2 hears lb1")

            dom = chromium(lab, "lb1", tmp, shot="admin-page-master.png")
            assert vrrp_state(dom) == "MASTER", dom[-3000:]
            assert server_states(dom) == {"web1": "UP", "web2": "UP"}, dom[-3000:]
            expl = lb1.status_cli()["vrrp"][0]["explanation"]
            assert expl and html.escape(expl, quote=False) in dom, (expl, dom[-3000:])
            assert "192.0.2.100/24" in dom or "192.0.2.100" in dom
            assert "updated " in dom  # the page's own fetch of status.json worked

            dom2 = chromium(lab, "lb2", tmp, shot="admin-page-backup.png")
            assert vrrp_state(dom2) == "BACKUP", dom2[-3000:]
            assert 'data-peer="192.0.2.11"' in dom2
            assert "No proxy service on this node." in dom2

            # One backend goes away: the checks mark it DOWN and the page says so.
            lab.stop("web2")
            wait_for(
                lambda: [s["healthy"] for s in lb1.status_cli()["proxy"][0]["servers"]] == [True, False],
                60,
                "web2 DOWN",
            )
            dom3 = chromium(lab, "lb1", tmp, shot="admin-page-server-down.png")
            assert server_states(dom3) == {"web1": "UP", "web2": "DOWN"}, dom3[-3000:]
            assert vrrp_state(dom3) == "MASTER"
        finally:
            for h in halos:
                h.stop()
