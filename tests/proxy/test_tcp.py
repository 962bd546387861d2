"""`[proxy.NAME] mode = "tcp"`: halo relays bytes between a client and one
server, on both I/O drivers (the `io` fixture), against real TCP services:
Python servers started here (an echo server, a server that answers at end
of stream, one that records the exact bytes it receives) and the real nginx
backends of proxyfix.py, spoken to over raw sockets.

Everything is on loopback. Waits are bounded; no test asserts a duration.
"""

import re
import socket
import threading
import time

import pytest

from localfix import free_port
from proxyfix import servers_of


class TcpBackend:
    """A threaded TCP server on 127.0.0.1. `handle(conn)` serves one
    connection; every byte received is also kept in `received` (one entry
    per connection, in accept order)."""

    def __init__(self, handle):
        self.handle = handle
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.received = []
        self.conns = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            c.settimeout(60)
            with self.lock:
                self.conns.append(c)
                self.received.append(bytearray())
                rec = self.received[-1]
            threading.Thread(target=self._serve, args=(c, rec), daemon=True).start()

    def _serve(self, c, rec):
        try:
            self.handle(c, rec)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


def echo(c, rec):
    while True:
        b = c.recv(65536)
        if not b:
            return
        rec += b
        c.sendall(b)


def answer_at_eof(c, rec):
    """Read until the client's FIN, then say how much came, then close:
    works only if the half-close reaches the server and the way back stays
    open."""
    while True:
        b = c.recv(65536)
        if not b:
            break
        rec += b
    c.sendall(f"got {len(rec)} bytes\n".encode())


def record(c, rec):
    """Keep everything; answer "ok" once "hello" has arrived."""
    while b"hello" not in rec:
        b = c.recv(65536)
        if not b:
            return
        rec += b
    c.sendall(b"ok")
    while c.recv(65536):
        pass


@pytest.fixture
def tcp_backend():
    made = []

    def make(handle):
        b = TcpBackend(handle)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def dead_address():
    """A loopback port nobody listens on (free_port keeps it from others)."""
    return f"127.0.0.1:{free_port()}"


def connect(h):
    s = socket.create_connection(("127.0.0.1", h.port), timeout=30)
    return s


def recv_exactly(s, n):
    out = bytearray()
    while len(out) < n:
        b = s.recv(n - len(out))
        if not b:
            break
        out += b
    return bytes(out)


def recv_all(s):
    out = bytearray()
    while True:
        b = s.recv(65536)
        if not b:
            return bytes(out)
        out += b


def http_get(h, path="/"):
    """One HTTP/1.0 request through the TCP relay: the raw response."""
    with connect(h) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        return recv_all(s)


def tcp_lines(h):
    return [l for l in h.access_lines() if " bytes_up=" in l]


def wait_for(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_relays_bytes_both_ways(tcp_backend, make_halo):
    b = tcp_backend(echo)
    h = make_halo([dict(name="echo", address=b.address)], mode="tcp")
    with connect(h) as s:
        # Several round trips, then 4 MiB in flight both ways at once (the
        # echo writes back while we still send): no byte lost or reordered.
        for i in range(5):
            msg = f"line {i}\n".encode()
            s.sendall(msg)
            assert recv_exactly(s, len(msg)) == msg
        blob = bytes(range(256)) * (4 * 4096)
        t = threading.Thread(target=s.sendall, args=(blob,))
        t.start()
        got = recv_exactly(s, len(blob))
        t.join(60)
        assert got == blob
    wait_for(lambda: tcp_lines(h), 30, "the access line")
    line = tcp_lines(h)[-1]
    assert "server=\"echo\"" in line and "status=0" in line, line


def test_balances_real_nginx_and_adds_nothing(backends_alive, make_halo):
    h = make_halo(servers_of(backends_alive), mode="tcp")
    seen = []
    for _ in range(6):
        r = http_get(h)
        assert r.startswith(b"HTTP/1.1 200"), r
        seen.append(re.search(rb"page from (web\d)", r).group(1).decode())
    # Round robin over three equal servers: each twice, in turn.
    assert sorted(seen) == ["web1", "web1", "web2", "web2", "web3", "web3"], seen
    assert seen[:3] == seen[3:], seen
    # A relay does not touch the bytes: no X-Forwarded-For appears.
    r = http_get(h, "/headers")
    assert b"xff=\n" in r, r


def test_source_keeps_a_client_on_its_server(backends_alive, make_halo):
    # source: one client address keeps its server.
    h = make_halo(servers_of(backends_alive), mode="tcp", balance="source")
    names = {re.search(rb"page from (web\d)", http_get(h)).group(1) for _ in range(4)}
    assert len(names) == 1, names


def test_down_server_skipped_by_health_checks(backends_alive, make_halo):
    # retries = 0: only the health check keeps connections off the dead
    # server (without it, round robin sends every other connection there).
    servers = [servers_of(backends_alive)[0], dict(name="dead", address=dead_address())]
    h = make_halo(servers, mode="tcp", retries=0,
                  health={"type": "tcp", "interval": "200ms", "timeout": "100ms",
                          "rise": 1, "fall": 1, "initial": "down"})
    wait_for(lambda: http_get(h).startswith(b"HTTP/1.1 200"), 60, "web1 up")
    for _ in range(6):
        r = http_get(h)
        assert b"page from web1" in r, r


def test_connect_failure_tries_another_server(backends_alive, make_halo):
    servers = [dict(name="dead", address=dead_address()), servers_of(backends_alive)[0]]
    h = make_halo(servers, mode="tcp", retries=3)
    for _ in range(6):
        r = http_get(h)
        assert b"page from web1" in r, r
    wait_for(lambda: len(tcp_lines(h)) >= 6, 30, "six access lines")
    lines = tcp_lines(h)
    # Round robin put some of them on the dead server first.
    assert any("retries=1" in l and "server=\"web1\"" in l for l in lines), lines


def test_all_servers_failing_closes_the_client(make_halo):
    h = make_halo([dict(name="dead", address=dead_address())], mode="tcp", retries=1)
    with connect(h) as s:
        assert recv_all(s) == b""
    wait_for(lambda: tcp_lines(h), 30, "the access line")
    line = tcp_lines(h)[-1]
    assert "status=503" in line and "retries=2" in line and "connect failed" in line, line


def test_half_close_reaches_the_server_and_the_answer_comes_back(tcp_backend, make_halo):
    b = tcp_backend(answer_at_eof)
    h = make_halo([dict(name="b", address=b.address)], mode="tcp")
    with connect(h) as s:
        s.sendall(b"x" * 100000)
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == b"got 100000 bytes\n"


def test_idle_timeout_closes(tcp_backend, make_halo):
    b = tcp_backend(echo)
    h = make_halo([dict(name="echo", address=b.address)], mode="tcp",
                  timeouts={"client": "1s", "server": "1s"})
    with connect(h) as s:
        s.sendall(b"ping")
        assert recv_exactly(s, 4) == b"ping"
        # Then nothing either way: halo closes (recv sees the end).
        assert recv_all(s) == b""
    wait_for(lambda: any("idle timeout" in l for l in tcp_lines(h)), 30, "the access line")


def test_maxconn_holds_the_next_client_until_one_closes(tcp_backend, make_halo):
    b = tcp_backend(echo)
    # dontlognull = false: the fixture's start-up probe (connect, close) is
    # logged, and once its line is out halo has counted that connection
    # out, so `first` is the only one.
    h = make_halo([dict(name="echo", address=b.address)], mode="tcp", maxconn=1,
                  dontlognull=False)
    wait_for(lambda: tcp_lines(h), 30, "the probe's access line")
    first = connect(h)
    first.sendall(b"1")
    assert recv_exactly(first, 1) == b"1"
    second = connect(h)  # the kernel accepts it into the backlog
    second.sendall(b"2")
    second.settimeout(1)
    # Not served while the first is open (no server connection made).
    with pytest.raises(socket.timeout):
        second.recv(1)
    # (The other entry is the start-up probe's connection.)
    assert [bytes(r) for r in b.received] == [b"", b"1"]
    first.close()
    second.settimeout(30)
    assert recv_exactly(second, 1) == b"2"
    second.close()


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_send_proxy_header_received_exactly(tcp_backend, make_halo, version):
    b = tcp_backend(record)
    other = "v2" if version == "v1" else "v1"
    # The server's own send_proxy overrides the service's.
    h = make_halo([dict(name="rec", address=b.address, send_proxy=f'"{version}"')],
                  mode="tcp", send_proxy=other)
    with connect(h) as s:
        cport = s.getsockname()[1]
        s.sendall(b"hello")
        assert recv_exactly(s, 2) == b"ok"
    got = bytes(b.received[-1])
    if version == "v1":
        want = f"PROXY TCP4 127.0.0.1 127.0.0.1 {cport} {h.port}\r\n".encode()
    else:
        want = (b"\r\n\r\n\x00\r\nQUIT\n" + b"\x21\x11\x00\x0c"
                + bytes([127, 0, 0, 1, 127, 0, 0, 1])
                + cport.to_bytes(2, "big") + h.port.to_bytes(2, "big"))
    assert got == want + b"hello", got


def test_leastconn_avoids_the_server_holding_a_connection(tcp_backend, make_halo):
    a, b = tcp_backend(echo), tcp_backend(echo)
    h = make_halo([dict(name="a", address=a.address), dict(name="b", address=b.address)],
                  mode="tcp", balance="leastconn")
    held = connect(h)
    held.sendall(b"x")
    assert recv_exactly(held, 1) == b"x"
    busy = "a" if any(r == b"x" for r in a.received) else "b"
    # While `held` is open its server has one connection: every new one
    # (opened and closed in turn) goes to the other.
    for i in range(4):
        with connect(h) as s:
            s.sendall(b"y")
            assert recv_exactly(s, 1) == b"y"
        # Its slot is released before its access line is written.
        wait_for(lambda: sum(1 for l in tcp_lines(h) if "bytes_up=1 " in l) > i, 30, "the access line")
    lines = [l for l in tcp_lines(h) if "bytes_up=1 " in l]
    assert all(f'server="{busy}"' not in l for l in lines), (busy, a.received, b.received, lines)
    held.close()


def speak_first_then_listen(c, rec):
    """Greet, end our side (FIN), then keep reading what the client still
    sends; answer nothing more."""
    c.sendall(b"bye")
    c.shutdown(socket.SHUT_WR)
    while True:
        b = c.recv(65536)
        if not b:
            return
        rec += b


def test_half_close_from_the_server_keeps_the_client_side_open(tcp_backend, make_halo):
    b = tcp_backend(speak_first_then_listen)
    h = make_halo([dict(name="b", address=b.address)], mode="tcp")
    with connect(h) as s:
        # The server's FIN reaches the client...
        assert recv_all(s) == b"bye"
        # ...and what the client sends afterwards still reaches the server.
        s.sendall(b"more")
        s.shutdown(socket.SHUT_WR)
        wait_for(lambda: bytes(b.received[-1]) == b"more", 30, "the bytes after the server's FIN")


@pytest.mark.parametrize("dontlognull", [True, False])
def test_dontlognull_skips_connections_without_a_byte(tcp_backend, make_halo, dontlognull):
    b = tcp_backend(echo)
    h = make_halo([dict(name="echo", address=b.address)], mode="tcp", dontlognull=dontlognull)
    connect(h).close()  # a port probe, like the fixture's own at start
    with connect(h) as s:
        s.sendall(b"z")
        assert recv_exactly(s, 1) == b"z"
    wait_for(lambda: any("bytes_up=1 " in l for l in tcp_lines(h)), 30, "the access line")
    def empty():
        return [l for l in tcp_lines(h) if "bytes_up=0 bytes=0 " in l]
    if dontlognull:
        # Both probes ended before "z" was sent back (one at start, one
        # closed before the second connection was made), unlogged.
        assert empty() == [], empty()
    else:
        wait_for(lambda: len(empty()) >= 2, 30, "both probes' access lines")
