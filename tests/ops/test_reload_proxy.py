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
from localfix import kill

# Upper bounds only; generous for a loaded 2-core machine.
T = 60
# Requests each client loop must complete between two reloads: traffic
# runs during every reload however slow the machine (a fixed sleep between
# reloads might see none), and the total is known.
PER_STEP = 20


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
    """Requests in a loop until stopped, at most `limit` of them or 120 s."""

    def __init__(self, port, keepalive, limit=5000):
        self.port, self.keepalive, self.limit = port, keepalive, limit
        self.ok = 0
        self.failed = []
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        conn = None
        end = time.monotonic() + 120
        while not self.stop.is_set() and self.ok + len(self.failed) < self.limit and time.monotonic() < end:
            try:
                if conn is None or not self.keepalive:
                    # A generous timeout: a slow answer on a loaded machine is not
                    # a dropped request; one that never comes still fails.
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
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
                # No retry, not even of a keep-alive connection closed between
                # two requests: halo retires a connection only after a
                # response that says `Connection: close` (issue 12).
                self.failed.append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None

    def finish(self):
        self.stop.set()
        self.t.join(timeout=30)
        assert not self.t.is_alive(), "the client loop did not stop"


def progress(loads):
    """Wait until every client loop has completed PER_STEP more requests."""
    want = [l.ok + len(l.failed) + PER_STEP for l in loads]

    def moved():
        for l, w in zip(loads, want):
            if l.ok + len(l.failed) < w:
                if not l.t.is_alive():
                    raise AssertionError(f"a client loop ended early: {l.ok} ok, {l.failed[:5]}")
                return False
        return True
    wait_for(moved, T, f"{PER_STEP} more requests from each client loop")


def start_halo(tmp, cfg_for):
    """halo on a port of its own. The port comes from free_port, so it may
    be taken again before halo binds it (another test, a client's
    ephemeral port): then halo exits saying so, and it gets another one.
    Returns (process, port, log path) once halo answers on its control
    socket and proxies a page."""
    sock = str(tmp / "halo.sock")
    cfg = tmp / "halo.toml"
    for attempt in range(5):
        port = free_port()
        cfg.write_text(cfg_for(port))
        log_path = tmp / f"halo-{attempt}.log"
        with open(log_path, "w") as log:
            halo = subprocess.Popen([halo_bin(), "run", "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT)

        def ours():
            # Our halo answers on its socket (so it bound its port: it binds
            # before it serves), and a page comes through the port.
            if halo.poll() is not None:
                return True
            r = subprocess.run([halo_bin(), "status", "--json", "--socket", sock],
                               capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                return False
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/page.html")
                return c.getresponse().status == 200
            except (OSError, http.client.HTTPException):
                return False
        try:
            wait_for(ours, T, "halo to proxy")
        except AssertionError:
            kill(halo)
            raise AssertionError(log_path.read_text()) from None
        if halo.poll() is None:
            return halo, port, log_path
        text = log_path.read_text()
        if "cannot listen on" not in text:
            raise AssertionError(f"halo exited with {halo.returncode}:\n{text}")
    raise AssertionError(f"no free port after 5 attempts:\n{text}")


@pytest.mark.parametrize("io", ["uring", "epoll"])
def test_reloads_under_load_fail_no_request(io):
    with tempfile.TemporaryDirectory(prefix="halo-reload-") as d:
        tmp = Path(d)
        webs = []
        for i in range(3):
            (tmp / f"w{i}").mkdir()
            webs.append(Nginx(tmp / f"w{i}"))
        try:
            sock = str(tmp / "halo.sock")
            cfg = tmp / "halo.toml"
            a = [("web1", webs[0].port, 1), ("web2", webs[1].port, 1)]
            b = [("web1", webs[0].port, 1), ("web2", webs[1].port, 3), ("web3", webs[2].port, 1)]
            halo, port, _ = start_halo(tmp, lambda p: config(p, a, sock, io))
            loads = []
            try:
                loads = [Load(port, keepalive=True), Load(port, keepalive=False)]
                for i in range(6):
                    progress(loads)
                    cfg.write_text(config(port, b if i % 2 == 0 else a, sock, io))
                    r = subprocess.run([halo_bin(), "reload", "--socket", sock], capture_output=True, text=True,
                                       timeout=T)
                    assert r.returncode == 0, r.stderr
                    assert "proxy: 1 service(s) reloaded" in r.stdout, r.stdout
                progress(loads)
                # An invalid file: refused, traffic unaffected.
                cfg.write_text(config(port, b, sock, io).replace("workers = 2", "workers = 0"))
                r = subprocess.run([halo_bin(), "reload", "--socket", sock], capture_output=True, text=True,
                                   timeout=T)
                assert r.returncode == 1 and "workers" in r.stderr, r.stderr
                progress(loads)
                for l in loads:
                    l.finish()
                total = sum(l.ok for l in loads)
                failed = [f for l in loads for f in l.failed]
                # 8 steps of PER_STEP for each of the two loops, at least.
                assert total + len(failed) >= 2 * 8 * PER_STEP, f"only {total} requests ran"
                assert failed == [], f"{len(failed)} of {total + len(failed)} failed: {failed[:5]}"
                # The last good config (a: two servers) is what runs.
                st = json.loads(subprocess.run([halo_bin(), "status", "--json", "--socket", sock],
                                               capture_output=True, text=True, check=True).stdout)
                assert [s["name"] for s in st["proxy"][0]["servers"]] == ["web1", "web2"]
                assert halo.poll() is None
            finally:
                for l in loads:
                    l.stop.set()
                kill(halo, grace=20)
        finally:
            for w in webs:
                w.stop()
