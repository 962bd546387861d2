"""halo's HTTP/1.1 reverse proxy against real nginx backends, on each I/O
driver (the `io` fixture parametrizes every test over "uring" and "epoll").

Timings are never asserted; waits are bounded.
"""

import os
import re
import select
import socket
import threading
import time

import pytest
import requests

from proxyfix import Halo, servers_of
from halolab import wait_for


def url(h, path="/"):
    return f"http://127.0.0.1:{h.port}{path}"


def raw(h, data, read_timeout=30.0, src="127.0.0.1"):
    """Send bytes, return everything received until the proxy closes (or timeout)."""
    with socket.create_connection(("127.0.0.1", h.port), timeout=read_timeout, source_address=(src, 0)) as s:
        s.sendall(data)
        return recv_all(s)


def recv_all(s):
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except socket.timeout:
        out += b"<timeout>"
    return out


def dechunk(b):
    out = b""
    while True:
        line, b = b.split(b"\r\n", 1)
        n = int(line.split(b";")[0], 16)
        if n == 0:
            assert b == b"\r\n", b
            return out
        out += b[:n]
        assert b[n : n + 2] == b"\r\n"
        b = b[n + 2 :]


def access_lines(h, n):
    """The access lines, once at least `n` are written (each is written
    just after its response, so a client can be a moment ahead)."""
    deadline = time.monotonic() + 30
    while len(h.access_lines()) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return h.access_lines()


def read_response(s):
    """One response with a Content-Length body from socket `s`: (head, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = s.recv(65536)
        assert b, buf
        buf += b
    head, body = buf.split(b"\r\n\r\n", 1)
    n = int(re.search(rb"(?im)^content-length: *(\d+)\r?$", head).group(1))
    while len(body) < n:
        b = s.recv(65536)
        assert b, (head, body)
        body += b
    assert len(body) == n, (head, body)
    return head, body


def backend_name(body):
    m = re.search(r"page from (web\d)", body)
    return m.group(1) if m else None


def swrr(weights, n):
    """nginx's smooth weighted round robin, as the reference."""
    cur = [0] * len(weights)
    out = []
    for _ in range(n):
        for i, w in enumerate(weights):
            cur[i] += w
        best = max(range(len(weights)), key=lambda i: (cur[i], -i))
        cur[best] -= sum(weights)
        out.append(best)
    return out


class RawBackend:
    """A tiny scripted HTTP server for cases nginx cannot produce (chunked or
    close-delimited responses on demand, a 101 upgrade with echo)."""

    def __init__(self, handler):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.seen = []
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        c.settimeout(10)
        try:
            self.handler(self, c)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.t.join(2)
        self.sock.close()


def read_head(c):
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = c.recv(4096)
        if not b:
            raise OSError("closed")
        buf += b
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


# === balancing ===


def test_roundrobin_weighted_order_and_proportions(backends_alive, make_halo):
    weights = [3, 2, 1]
    servers = servers_of(backends_alive)
    for s, w in zip(servers, weights):
        s["weight"] = w
    h = make_halo(servers)
    got = []
    for _ in range(60):
        got.append(backend_name(requests.get(url(h)).text))
    want = [f"web{i + 1}" for i in swrr(weights, 60)]
    assert got == want
    assert [got.count(f"web{i}") for i in (1, 2, 3)] == [30, 20, 10]


def test_leastconn_avoids_busy_server(backends_alive, make_halo):
    big = [b.big_file("big.bin", 100 * 1024 * 1024) for b in backends_alive][0]
    h = make_halo(servers_of(backends_alive), balance="leastconn")
    # Hold one request open (not reading its body) so one server is busy.
    held = requests.get(url(h, big), stream=True, timeout=10)
    busy = held.headers["X-Backend"]
    try:
        got = [requests.get(url(h)).headers["X-Backend"] for _ in range(12)]
        assert busy not in got
        others = sorted({"web1", "web2", "web3"} - {busy})
        assert sorted(set(got)) == others
        # Ties between the idle two rotate.
        assert got.count(others[0]) == got.count(others[1]) == 6
    finally:
        held.close()


def test_source_is_sticky(backends_alive, make_halo):
    h = make_halo(servers_of(backends_alive), balance="source")
    chosen = {}
    for last in range(1, 21):
        src = f"127.0.0.{last}"
        seen = set()
        for _ in range(4):
            resp = raw(h, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", src=src)
            seen.add(backend_name(resp.decode()))
        assert len(seen) == 1, (src, seen)
        chosen[src] = seen.pop()
    # Twenty clients do not all land on one server.
    assert len(set(chosen.values())) > 1


# === headers ===


def test_forwarded_headers(backends_alive, make_halo):
    h = make_halo(servers_of(backends_alive))
    r = requests.get(
        url(h, "/headers"),
        headers={"X-Forwarded-For": "192.0.2.10", "Connection": "keep-alive, X-Secret", "X-Secret": "s"},
    )
    assert r.status_code == 200
    assert "xff=192.0.2.10, 127.0.0.1\n" in r.text
    assert "fwd=for=127.0.0.1;proto=http\n" in r.text
    assert "proto=http\n" in r.text
    assert f"host=127.0.0.1:{h.port}\n" in r.text
    # Hop-by-hop fields, and those Connection names, are not forwarded.
    assert "secret=\n" in r.text
    assert "te=\n" in r.text


def test_forwardfor_except(backends_alive, make_halo):
    h = make_halo(servers_of(backends_alive), forwardfor_except=["127.0.0.0/8"])
    r = requests.get(url(h, "/headers"))
    assert "xff=\n" in r.text
    assert "proto=http\n" in r.text


# === keep-alive ===


def test_keepalive_reuse_both_sides(backends_alive, make_halo):
    h = make_halo(servers_of(backends_alive))
    s = requests.Session()
    conn_requests = []
    for _ in range(9):
        r = s.get(url(h))
        assert r.status_code == 200
        conn_requests.append(int(r.headers["X-Conn-Requests"]))
    # Server side: pooled connections carry several requests each.
    assert max(conn_requests) >= 3
    # Client side: one client connection (one source port) for all nine.
    lines = access_lines(h, 9)
    ports = {re.search(r"client=127\.0\.0\.1:(\d+)", l).group(1) for l in lines}
    assert len(ports) == 1, lines
    assert len(lines) == 9


def test_http10_client_gets_close_delimited(backends_alive, make_halo):
    h = make_halo(servers_of(backends_alive))
    resp = raw(h, b"GET / HTTP/1.0\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 200")
    assert b"page from web" in resp


def test_pipelined_requests(backends_alive, make_halo):
    h = make_halo(servers_of(backends_alive))
    two = b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    resp = raw(h, two)
    assert resp.count(b"HTTP/1.1 200") == 2


def test_heads_larger_than_the_first_read_on_keep_alive(backends_alive, make_halo):
    """A client connection waits for a request with a small buffer (1 KiB,
    for thousands of idle connections): heads larger than that, a body that
    grew the buffer, idle time between requests, and pipelined large heads
    all still arrive whole on the same connection."""
    h = make_halo(servers_of(backends_alive))
    pad = lambda n: b"X-Pad: " + b"p" * n + b"\r\n"  # noqa: E731
    with socket.create_connection(("127.0.0.1", h.port), timeout=30) as s:
        # 1. A 5 KiB head as the connection's first bytes.
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n" + pad(5000) + b"\r\n")
        head, body = read_response(s)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"page from web" in body
        # 2. A 40 KiB body: the client buffer grows past its first size.
        s.sendall(b"POST /sink HTTP/1.1\r\nHost: t\r\nContent-Length: 40000\r\n\r\n" + b"b" * 40000)
        head, body = read_response(s)
        assert head.startswith(b"HTTP/1.1 200"), head
        # 3. Idle, then a 3 KiB head in two pieces.
        time.sleep(0.3)
        big = b"GET / HTTP/1.1\r\nHost: t\r\n" + pad(3000) + b"\r\n"
        s.sendall(big[:700])
        time.sleep(0.2)
        s.sendall(big[700:])
        head, body = read_response(s)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"page from web" in body
        # 4. Two pipelined 2 KiB heads, the second closing.
        s.sendall(
            b"GET / HTTP/1.1\r\nHost: t\r\n" + pad(2000) + b"\r\n"
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + pad(2000) + b"\r\n"
        )
        resp = recv_all(s)
    assert resp.count(b"HTTP/1.1 200") == 2, resp[:300]


# === bodies ===


def test_chunked_request_body(backends_alive, make_halo):
    h = make_halo(servers_of(backends_alive))
    with socket.create_connection(("127.0.0.1", h.port), timeout=30) as s:
        s.sendall(
            b"POST /sink HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        # The whole first response, then the next request (not pipelined).
        head, body = read_response(s)
        # Framing stayed in sync: the next request on the same connection works.
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        resp = recv_all(s)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"te=chunked" in body, body
    assert resp.count(b"HTTP/1.1 200") == 1, resp
    assert b"page from web" in resp


def test_chunked_request_exact_bytes_and_chunked_response(make_halo):
    def handler(b, c):
        head, rest = read_head(c)
        body = rest
        while not body.endswith(b"0\r\n\r\n"):
            body += c.recv(4096)
        b.seen.append((head, body))
        c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
        time.sleep(0.5)

    rb = RawBackend(handler)
    try:
        h = make_halo([dict(name="raw", address=f"127.0.0.1:{rb.port}")])
        resp = raw(h, b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nWiki\r\n0\r\n\r\n")
        assert resp.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Transfer-Encoding: chunked\r\n" in resp
        # Re-chunked on the way (chunk boundaries carry no meaning).
        assert dechunk(resp.split(b"\r\n\r\n", 1)[1]) == b"abcdefg"
        head, body = rb.seen[0]
        assert "Transfer-Encoding: chunked" in head
        assert body == b"4\r\nWiki\r\n0\r\n\r\n"
    finally:
        rb.close()


def test_close_delimited_response_rechunked(make_halo):
    def handler(b, c):
        read_head(c)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close")
        c.shutdown(socket.SHUT_WR)

    rb = RawBackend(handler)
    try:
        h = make_halo([dict(name="raw", address=f"127.0.0.1:{rb.port}")])
        s = requests.Session()
        for _ in range(2):
            r = s.get(url(h))
            assert r.text == "until close"
            assert r.headers.get("Transfer-Encoding") == "chunked"
        ports = {re.search(r"client=127\.0\.0\.1:(\d+)", l).group(1) for l in access_lines(h, 2)}
        assert len(ports) == 1
    finally:
        rb.close()


def test_malformed_server_response_is_502(make_halo):
    def handler(b, c):
        read_head(c)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd")

    rb = RawBackend(handler)
    try:
        h = make_halo([dict(name="raw", address=f"127.0.0.1:{rb.port}")])
        assert requests.get(url(h)).status_code == 502
    finally:
        rb.close()


def test_100mb_download_streams_with_bounded_memory(backends_alive, make_halo):
    size = 100 * 1024 * 1024
    path = [b.big_file("big.bin", size) for b in backends_alive][0]
    h = make_halo(servers_of(backends_alive))
    # The baseline once halo has served a request: its listener accepts
    # before the worker's runtime is set up.
    assert requests.get(url(h), timeout=30).status_code == 200
    before = h.rss_kib("VmRSS")
    got = 0
    with requests.get(url(h, path), stream=True, timeout=60) as r:
        assert r.status_code == 200
        for chunk in r.iter_content(1 << 20):
            got += len(chunk)
    assert got == size
    peak = h.rss_kib("VmHWM")
    assert peak - before < 32 * 1024, (before, peak)


def test_100mb_upload_streams_with_bounded_memory(backends_alive, make_halo):
    h = make_halo(servers_of(backends_alive))
    assert requests.get(url(h), timeout=30).status_code == 200
    before = h.rss_kib("VmRSS")
    block = b"x" * (1 << 20)

    def gen():
        for _ in range(100):
            yield block

    r = requests.post(url(h, "/sink"), data=gen(), timeout=120)
    assert r.status_code == 200
    assert "te=chunked" in r.text
    peak = h.rss_kib("VmHWM")
    assert peak - before < 32 * 1024, (before, peak)


# === upgrade ===


def test_websocket_upgrade_tunnel(make_halo):
    def handler(b, c):
        head, rest = read_head(c)
        b.seen.append(head)
        c.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        )
        data = rest
        while True:
            if data:
                c.sendall(data)
            data = c.recv(4096)
            if not data:
                return

    rb = RawBackend(handler)
    try:
        h = make_halo([dict(name="ws", address=f"127.0.0.1:{rb.port}")])
        with socket.create_connection(("127.0.0.1", h.port), timeout=30) as s:
            s.sendall(
                b"GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            buf = b""
            while b"\r\n\r\n" not in buf:
                b = s.recv(4096)
                assert b, buf
                buf += b
            assert buf.startswith(b"HTTP/1.1 101")
            assert b"Upgrade: websocket" in buf
            for msg in (b"hello", b"\x81\x05world", b"x" * 100000):
                s.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    b = s.recv(65536)
                    assert b, got
                    got += b
                assert got == msg
        assert "Upgrade: websocket" in rb.seen[0]
        assert "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" in rb.seen[0]
    finally:
        rb.close()


# === refusals ===

SMUGGLING = {
    "cl_and_te": b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "differing_cl": b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    "cl_list": b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4, 5\r\n\r\nabcde",
    "te_not_chunked_last": b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "te_identity": b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\n\r\n",
    "te_http10": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "obs_fold": b"GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n folded\r\n\r\n",
    "bad_header_name": b"GET / HTTP/1.1\r\nHost: t\r\nBad Name: 1\r\n\r\n",
    "space_before_colon": b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length : 5\r\n\r\nabcde",
    "ctl_in_value": b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x01b\r\n\r\n",
    "bare_cr": b"GET / HTTP/1.1\r\nHost: t\rX-A: 1\r\n\r\n",
    "no_host": b"GET / HTTP/1.1\r\n\r\n",
    "two_hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "bad_chunk_size": b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(SMUGGLING))
def test_smuggling_refused_with_400_and_close(backends_alive, make_halo, case):
    h = make_halo(servers_of(backends_alive))
    resp = raw(h, SMUGGLING[case] + b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n")
    # Refused with 400 and closed: nothing after is answered.
    assert resp.startswith(b"HTTP/1.1 400 "), resp[:200]
    assert resp.count(b"HTTP/1.1") == 1
    assert b"<timeout>" not in resp


def test_oversized_head_and_too_many_headers(backends_alive, make_halo):
    h = make_halo(servers_of(backends_alive), limits={"max_head_bytes": 2048, "max_headers": 20})
    big = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n"
    assert raw(h, big).startswith(b"HTTP/1.1 400 ")
    many = b"GET / HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(40)) + b"\r\n"
    assert raw(h, many).startswith(b"HTTP/1.1 400 ")
    ok = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + b"X-A: 1\r\n" * 5 + b"\r\n"
    assert raw(h, ok).startswith(b"HTTP/1.1 200 ")


def test_slow_client_cut_by_http_request(backends_alive, make_halo):
    h = make_halo(servers_of(backends_alive), timeouts={"http_request": "1s"})
    with socket.create_connection(("127.0.0.1", h.port), timeout=15) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
        t0 = time.time()
        # Trickle header bytes; the whole head has a deadline, not each read.
        while time.time() - t0 < 10:
            # Stop once the proxy has answered (or closed).
            if select.select([s], [], [], 0.2)[0]:
                break
            s.sendall(b"X")
        resp = recv_all(s)
    assert resp.startswith(b"HTTP/1.1 408 "), resp[:100]


# === failures ===


def test_backend_killed_gets_keep_succeeding(backends_alive, make_halo):
    h = make_halo(servers_of(backends_alive), retries=3)
    victim = backends_alive[1]
    victim.stop()
    try:
        s = requests.Session()
        got = [s.get(url(h)) for _ in range(30)]
        assert all(r.status_code == 200 for r in got), [r.status_code for r in got]
        assert "web2" not in {backend_name(r.text) for r in got}
        # Fresh connections too (no pooled connection to web2 to fall back on).
        for _ in range(10):
            assert requests.get(url(h), headers={"Connection": "close"}).status_code == 200
    finally:
        victim.start()


def test_pooled_connection_closed_by_server_is_retried(backends_alive, make_halo):
    h = make_halo(servers_of(backends_alive[:1]))
    s = requests.Session()
    assert s.get(url(h)).status_code == 200
    # Restart the backend: the proxy's pooled connection is now dead.
    backends_alive[0].stop()
    backends_alive[0].start()
    assert s.get(url(h)).status_code == 200


def test_all_down_without_checks_is_502(backends_alive, make_halo):
    # No [health]: every server counts as up, every connect is refused, and
    # docs/proxy.md promises 502 when connecting failed on every attempt
    # (503 is for "no server up", test_all_down_by_health_is_503). The
    # test accepted either before (issue 12).
    h = make_halo(servers_of(backends_alive), retries=2)
    for b in backends_alive:
        b.stop()
    try:
        r = requests.get(url(h))
        assert r.status_code == 502
        assert "halo" in r.text
    finally:
        for b in backends_alive:
            b.start()


def test_all_down_by_health_is_503(backends_alive, make_halo):
    h = make_halo(
        servers_of(backends_alive),
        health={"type": "http", "path": "/health", "interval": "300ms", "fast_interval": "100ms", "timeout": "250ms", "rise": 1, "fall": 1},
    )
    for b in backends_alive:
        b.stop()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = requests.get(url(h), timeout=30)
            if r.status_code == 503:
                break
            time.sleep(0.2)
        assert r.status_code == 503
        # The access line is written just after the response.
        deadline = time.monotonic() + 30
        while "no server up" not in h.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 'note="no server up"' in h.log()
    finally:
        for b in backends_alive:
            b.start()


def test_config_is_valid_for_halo_check(backends_alive, tmp_path, io):
    h = Halo(str(tmp_path), io, servers_of(backends_alive), balance="leastconn", retries=2, timeouts={"connect": "2s"})
    r = h.check()
    assert r.returncode == 0, r.stdout + r.stderr


def test_access_log_line(backends_alive, make_halo):
    h = make_halo(servers_of(backends_alive))
    requests.get(url(h, "/?q=1"))
    lines = access_lines(h, 1)
    # An empty connection is not logged (dontlognull defaults on). halo
    # would write its line before closing its end, so once the client sees
    # that close, any line for it is in the log.
    with socket.create_connection(("127.0.0.1", h.port), timeout=30) as s:
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == b""
    lines = h.access_lines()
    assert len(lines) == 1, lines
    line = lines[0]
    for field in ("service=web", 'server="web1"', "status=200", "Tq=", "Tw=", "Tc=", "Tr=", "Tt=", "GET /?q=1"):
        assert field in line, line


def test_server_maxconn_queue_full_is_503(backends_alive, make_halo):
    big = backends_alive[0].big_file("big.bin", 100 * 1024 * 1024)
    h = make_halo(servers_of(backends_alive[:1], maxconn=1), queue=0)
    held = requests.get(url(h, big), stream=True, timeout=10)
    try:
        assert held.status_code == 200
        r = requests.get(url(h))
        assert r.status_code == 503
    finally:
        held.close()
    # The slot comes back once the held request ends.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if requests.get(url(h), timeout=30).status_code == 200:
            break
        time.sleep(0.2)
    assert requests.get(url(h)).status_code == 200


def test_server_timeout_is_504(make_halo):
    def handler(b, c):
        read_head(c)
        time.sleep(4)

    rb = RawBackend(handler)
    try:
        h = make_halo([dict(name="mute", address=f"127.0.0.1:{rb.port}")], timeouts={"server": "1s"})
        r = requests.get(url(h), timeout=30)
        assert r.status_code == 504
    finally:
        rb.close()



def test_refusal_drains_what_the_client_still_sends(backends_alive, make_halo):
    """A 400 goes out with a half-close, then halo reads and drops what the
    client still sends (a body behind a bad head) before it closes: closing
    with unread input answers with a reset, which makes clients on some
    systems drop the page, and the connection ends in an error instead of
    a clean close."""
    h = make_halo(servers_of(backends_alive))
    body = b"x" * (512 * 1024)
    head = b"POST / HTTP/1.1\r\nHost: t\r\nBad Name: 1\r\nContent-Length: %d\r\n\r\n" % len(body)
    with socket.create_connection(("127.0.0.1", h.port), timeout=30) as s:
        s.sendall(head + body)
        s.shutdown(socket.SHUT_WR)
        resp = recv_all(s)
        assert resp.startswith(b"HTTP/1.1 400 "), resp[:200]
        assert b"<timeout>" not in resp
        # Both sides have closed once the client's socket is CLOSE (7):
        # by the FIN handshake, or by a reset that leaves an error behind.
        wait_for(lambda: s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == 7, 30, "connection closed")
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        assert err == 0, f"connection reset by halo: {os.strerror(err)}"
