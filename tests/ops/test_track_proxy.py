"""A proxy with no healthy server lowers the VRRP priority, the VIP moves,
and it comes back when a server does; meanwhile the proxy answers 503.

lb1 (priority 150) tracks its proxy with weight -60; lb2 (priority 100)
does not track. One real nginx (web1) in its own namespace. All inside
namespaces on one bridge.
"""

import os
import signal
import tempfile

import pytest

from netns import Topology, halo_bin, wait_for

VIP = "192.0.2.100"


def nginx_conf(d):
    return f"""
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;
    uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;
    server {{
        listen 192.0.2.21:80;
        location = /health {{ return 200 "ok\\n"; }}
        location / {{ return 200 "web1\\n"; }}
    }}
}}
"""


def halo_conf(prio, track, sock):
    t = 'track = [{ proxy = "web", weight = -60 }]' if track else ""
    return f"""
[global]
control_socket = "{sock}"

[vrrp.VI_1]
interface = "eth0"
vrid = 51
priority = {prio}
advert_interval = "100ms"
virtual_ips = ["{VIP}/24"]
{t}

[proxy.web]
bind = ["{VIP}:80"]
servers = [{{ name = "web1", address = "192.0.2.21:80" }}]

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
    with tempfile.TemporaryDirectory(prefix="halo-track-") as tmp, Topology("tp") as t:
        t.switch()
        t.host("web1", "192.0.2.21/24")
        t.host("lb1", "192.0.2.11/24")
        t.host("lb2", "192.0.2.12/24")
        t.host("client", "192.0.2.2/24")
        web = os.path.join(tmp, "web1")
        os.mkdir(web)
        with open(os.path.join(web, "nginx.conf"), "w") as f:
            f.write(nginx_conf(web))
        nginx = ["nginx", "-p", web, "-e", os.path.join(web, "error.log"), "-c", os.path.join(web, "nginx.conf")]
        t.spawn("nginx", "web1", nginx, logdir=tmp)
        for name, prio, track in (("lb1", 150, True), ("lb2", 100, False)):
            path = os.path.join(tmp, f"{name}.toml")
            with open(path, "w") as f:
                f.write(halo_conf(prio, track, os.path.join(tmp, f"{name}.sock")))
            t.spawn(name, name, [halo_bin(), "run", "--config", path], logdir=tmp)

        def get():
            r = t.exec("client", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "2",
                       f"http://{VIP}/", check=False)
            return r.stdout.strip()

        try:
            wait_for(lambda: t.holders(["lb1", "lb2"], VIP) == ["lb1"], 10, "lb1 master")
            wait_for(lambda: get() == "200", 10, "a page through the VIP")
            t.stop("nginx", signal.SIGKILL)
            # lb1: 150 - 60 = 90 < lb2's 100: lb2 preempts.
            wait_for(lambda: t.holders(["lb1", "lb2"], VIP) == ["lb2"], 10, "lb2 to take the VIP")
            assert "90 = 150 - 60 (track web: no healthy server)" in t.log("lb1"), t.log("lb1")
            assert get() == "503"
            t.spawn("nginx", "web1", nginx, logdir=tmp)
            wait_for(lambda: t.holders(["lb1", "lb2"], VIP) == ["lb1"], 10, "lb1 back as master")
            wait_for(lambda: get() == "200", 10, "pages again")
        except AssertionError:
            print(t.log("lb1"))
            raise
