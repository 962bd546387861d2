"""Reloading the proxy under load drops nothing.

Real nginx backends on loopback, halo proxying to them, a bounded client
loop (keep-alive and fresh connections) running while the config is
reloaded again and again — re-weighted servers, a server added and removed,
and one invalid file. Every request must succeed, and the new config must
take effect.
"""

import http.client
import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from health.healthfix import Nginx, free_port
from halolab import halo_bin, wait_for


def config(port, servers, sock, io):
    lines = ",\n".join(
        f'  {{ name = "{n}", address = "127.0.0.1:{p}", weight = {w} }}' for n, p, w in servers)
    return f"""
[global]
control_socket = "{sock}"
log_level = "warn"

[proxy.web]
bind = ["127.0.0.1:{port}"]
workers = 2
io = "{io}"
servers = [
{lines},
]

[proxy.web.health]
path = "/health"
interval = "500ms"
timeout = "400ms"
"""


class Load:
    """Requests in a loop until stopped, at most `limit` of them or 60 s."""

    def __init__(self, port, keepalive, limit=5000):
        self.port, self.keepalive, self.limit = port, keepalive, limit
        self.ok = 0
        self.failed = []
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        conn = None
        end = time.monotonic() + 60
        while not self.stop.is_set() and self.ok + len(self.failed) < self.limit and time.monotonic() < end:
            try:
                if conn is None or not self.keepalive:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/page.html")
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    self.failed.append(f"status {r.status}")
                else:
                    self.ok += 1
                if r.getheader("Connection", "").lower() == "close" or not self.keepalive:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                # A keep-alive connection closed by the server between two
                # requests is normal HTTP: a client retries on a new one.
                if self.keepalive and isinstance(e, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)) and conn is not None:
                    conn.close()
                    conn = None
                    continue
                self.failed.append(repr(e))
                conn = None

    def finish(self):
        self.stop.set()
        self.t.join(timeout=30)


@pytest.mark.parametrize("io", ["uring", "epoll"])
def test_reloads_under_load_fail_no_request(io):
    with tempfile.TemporaryDirectory(prefix="halo-reload-") as d:
        tmp = Path(d)
        webs = []
        for i in range(3):
            (tmp / f"w{i}").mkdir()
            webs.append(Nginx(tmp / f"w{i}"))
        try:
            port = free_port()
            sock = str(tmp / "halo.sock")
            cfg = tmp / "halo.toml"
            a = [("web1", webs[0].port, 1), ("web2", webs[1].port, 1)]
            b = [("web1", webs[0].port, 1), ("web2", webs[1].port, 3), ("web3", webs[2].port, 1)]
            cfg.write_text(config(port, a, sock, io))
            log = open(tmp / "halo.log", "w")
            halo = subprocess.Popen([halo_bin(), "run", "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
            try:
                assert halo.poll() is None, (tmp / "halo.log").read_text()
                def up():
                    try:
                        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                        c.request("GET", "/page.html")
                        return c.getresponse().status == 200
                    except OSError:
                        return False
                try:
                    wait_for(up, 20, "halo to proxy")
                except AssertionError:
                    raise AssertionError((tmp / "halo.log").read_text())
                loads = [Load(port, keepalive=True), Load(port, keepalive=False)]
                for i in range(6):
                    time.sleep(0.4)
                    cfg.write_text(config(port, b if i % 2 == 0 else a, sock, io))
                    r = subprocess.run([halo_bin(), "reload", "--socket", sock], capture_output=True, text=True)
                    assert r.returncode == 0, r.stderr
                    assert "proxy: 1 service(s) reloaded" in r.stdout, r.stdout
                # An invalid file: refused, traffic unaffected.
                cfg.write_text(config(port, b, sock, io).replace("workers = 2", "workers = 0"))
                r = subprocess.run([halo_bin(), "reload", "--socket", sock], capture_output=True, text=True)
                assert r.returncode == 1 and "workers" in r.stderr, r.stderr
                time.sleep(0.5)
                for l in loads:
                    l.finish()
                total = sum(l.ok for l in loads)
                failed = [f for l in loads for f in l.failed]
                assert total > 100, f"only {total} requests ran"
                assert failed == [], f"{len(failed)} of {total + len(failed)} failed: {failed[:5]}"
                # The last good config (a: two servers) is what runs.
                st = json.loads(subprocess.run([halo_bin(), "status", "--json", "--socket", sock],
                                               capture_output=True, text=True, check=True).stdout)
                assert [s["name"] for s in st["proxy"][0]["servers"]] == ["web1", "web2"]
                assert halo.poll() is None
            finally:
                halo.terminate()
                halo.wait(timeout=20)
        finally:
            for w in webs:
                w.stop()
