"""`halo server drain` is not `halo server disable` (issue 12), as HAProxy's
drain is not maint:

- drain: no new request goes to the server; a request in flight to it
  finishes; its idle pooled connections are closed (they would carry
  nothing more), and so is the in-flight one once its response is done.
- disable: out at once: no request goes there, its idle pooled connections
  are closed, and a request in flight to it is cut.

Before, both were the same: new requests went elsewhere, and nothing else
changed. Real nginx backends on loopback, halo driven through the `halo
server` CLI, `halo status` read back. The "in flight" request is a big file
read slowly by the test, so it stays in flight however fast the machine;
waits are bounded and never asserted as timings."""

import json
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from health.healthfix import Nginx
from halolab import halo_bin, wait_for
from localfix import kill
from ops.test_reload_proxy import start_halo

T = 30
# Far more than every socket buffer between nginx, halo and the test can
# hold, so the response is still in flight while the test does not read.
BIG = 48 << 20


def config(port, servers, sock, io):
    lines = ",\n".join(f'  {{ name = "{n}", address = "127.0.0.1:{p}" }}' for n, p in servers)
    # One worker: one pool, so the connections counted below are all of
    # halo's; no [health]: no probe connections to count.
    return f"""
[global]
control_socket = "{sock}"
log_level = "warn"

[proxy.web]
bind = ["127.0.0.1:{port}"]
workers = 1
io = "{io}"
servers = [
{lines},
]
# Long enough that no timeout closes a connection during the test: what
# closes one is the drain or the disable.
timeouts = {{ keep_alive = "10m", client = "10m", server = "10m" }}
"""


def conns_to(port):
    """Established TCP connections to 127.0.0.1:port (halo's to a backend:
    nothing else connects to the backends here)."""
    r = subprocess.run(["ss", "-Htn", "state", "established", "dst", f"127.0.0.1:{port}"],
                       capture_output=True, text=True, check=True, timeout=T)
    return len(r.stdout.splitlines())


def get(port, path, s=None):
    """GET on keep-alive socket `s` (a new one if None): (status, body, s)."""
    if s is None:
        s = socket.create_connection(("127.0.0.1", port), timeout=T)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    status, _, rest = read_response_body(s)
    return status, rest, s


def read_response_body(s):
    """(status, close?, body) of one response with Content-Length."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        assert d, "connection closed before a response head"
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    n = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
    while len(body) < n:
        d = s.recv(65536)
        assert d, "connection closed in a body"
        body += d
    return int(head.split()[1]), b"connection: close" in head.lower(), body


class Slow:
    """GET /big.bin with a small receive buffer, reading only the head and
    the first bytes: the rest stays in flight until `finish`."""

    def __init__(self, port):
        self.s = socket.socket()
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.s.settimeout(T)
        self.s.connect(("127.0.0.1", port))
        self.s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf or len(buf.split(b"\r\n\r\n", 1)[1]) == 0:
            d = self.s.recv(4096)
            assert d, "no response"
            buf += d
        head, self.body = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200"), head
        self.server = self.body[:1].decode()  # "1" or "2": which backend
        self.length = int([l.split(b":")[1] for l in head.split(b"\r\n")
                           if l.lower().startswith(b"content-length:")][0])

    def finish(self):
        """Read the rest: the number of body bytes received in all."""
        n = len(self.body)
        try:
            while n < self.length:
                d = self.s.recv(1 << 20)
                if not d:
                    break
                n += len(d)
        except ConnectionResetError:
            pass
        self.s.close()
        return n


def ctl(sock, *args):
    return subprocess.run([halo_bin(), *args, "--socket", sock], capture_output=True, text=True, timeout=T)


@pytest.fixture
def setup():
    with tempfile.TemporaryDirectory(prefix="halo-drain-") as d:
        tmp = Path(d)
        webs = []
        try:
            for i in (1, 2):
                (tmp / f"w{i}").mkdir()
                w = Nginx(tmp / f"w{i}")
                webs.append(w)
                (tmp / f"w{i}" / "html" / "who.txt").write_text(f"web{i}\n")
                (tmp / f"w{i}" / "html" / "big.bin").write_bytes(str(i).encode() * BIG)
            yield tmp, webs
        finally:
            for w in webs:
                w.stop()


def in_flight_to_web2(port):
    """A Slow request that web2 serves (round robin: one of two is)."""
    tries = []
    for _ in range(4):
        s = Slow(port)
        if s.server == "2":
            for t in tries:
                t.s.close()
            return s
        tries.append(s)
    raise AssertionError("no request went to web2")


@pytest.mark.parametrize("io", ["uring", "epoll"])
@pytest.mark.parametrize("verb", ["drain", "disable"])
def test_drain_lets_requests_finish_disable_cuts_them(setup, verb, io):
    tmp, webs = setup
    sock = str(tmp / "halo.sock")
    servers = [("web1", webs[0].port), ("web2", webs[1].port)]
    halo, port, log = start_halo(tmp, lambda p: config(p, servers, sock, io))
    try:
        slow = in_flight_to_web2(port)
        # While it is in flight, a keep-alive client's requests leave an
        # idle pooled connection to web2 (and to web1).
        s = None
        seen = set()
        for _ in range(6):
            status, body, s = get(port, "/who.txt", s)
            assert status == 200
            seen.add(body.decode().strip())
        s.close()
        assert seen == {"web1", "web2"}, seen
        wait_for(lambda: conns_to(webs[1].port) == 2, T, "halo's in-flight and idle connections to web2")

        r = ctl(sock, "server", verb, "web/web2")
        assert r.returncode == 0 and f"web/web2: {'drain' if verb == 'drain' else 'disabled'}" in r.stdout, r
        st = json.loads(ctl(sock, "status", "--json").stdout)["proxy"][0]["servers"]
        web2 = [v for v in st if v["name"] == "web2"][0]
        assert web2["admin"] == ("drain" if verb == "drain" else "disabled") and not web2["usable"], web2
        assert ("drain" if verb == "drain" else "disabled") in ctl(sock, "status").stdout

        # No new request goes to web2, fresh or keep-alive.
        s = None
        for _ in range(6):
            status, body, s = get(port, "/who.txt", s)
            assert (status, body) == (200, b"web1\n")
        s.close()

        if verb == "drain":
            # The idle connection goes, the one in flight stays...
            wait_for(lambda: conns_to(webs[1].port) == 1, T, "the idle connection to web2 to close")
            # ...and its response arrives whole; then it closes too.
            assert slow.finish() == BIG
            wait_for(lambda: conns_to(webs[1].port) == 0, T, "no connection left to web2")
        else:
            # Both go at once, the one in flight too: its response is cut.
            wait_for(lambda: conns_to(webs[1].port) == 0, T, "every connection to web2 to close")
            got = slow.finish()
            assert got < BIG, "a disabled server's response went on"

        # Back in rotation.
        r = ctl(sock, "server", "enable", "web/web2")
        assert r.returncode == 0, r
        seen = set()
        for _ in range(4):
            status, body, _s = get(port, "/who.txt")
            _s.close()
            seen.add(body.decode().strip())
        assert seen == {"web1", "web2"}, seen
        assert halo.poll() is None, log.read_text()
    finally:
        kill(halo, grace=20)
