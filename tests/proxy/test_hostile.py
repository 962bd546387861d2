"""halo's proxy against hostile clients and misbehaving servers (issue 13),
on each I/O driver. The servers here are RecordingBackends: they record
the exact bytes each request reached them with and answer with exact
bytes, so every test asserts what the server saw, not only what the
client got.

Timings are never asserted; waits are bounded.
"""

import re
import socket
import threading

import pytest

from proxyfix import servers_of

FRESH = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh"
POISON = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nPOISONED!"


def raw(h, data, timeout=60.0):
    """Send bytes to halo, return all it sends until it closes."""
    with socket.create_connection(("127.0.0.1", h.port), timeout=timeout) as s:
        s.sendall(data)
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


def servers(*backends):
    return [dict(name=f"raw{i}", address=b.address) for i, b in enumerate(backends)]


# === 1. a pooled server connection never carries bytes into another response ===

# (first request, first answer, what the server writes after it)
POISONERS = {
    # 204 has no body; a response written 50 ms later is not this one's.
    "after_204": (b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", b"HTTP/1.1 204 No Content\r\n\r\n", POISON),
    # More than Content-Length said, in a later segment.
    "past_content_length": (b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", POISON),
    # A body after the response to HEAD (which has none).
    "body_after_head": (b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", POISON),
    # The server closes after a complete keep-alive response: the next
    # request (a POST, never replayed) must go on a new connection.
    "close_after_response": (b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst", None),
}


@pytest.mark.parametrize("case", sorted(POISONERS))
def test_pooled_connection_with_unread_data_or_eof_is_not_reused(make_halo, recorder, case):
    first_req, first_answer, later = POISONERS[case]
    written = threading.Event()

    def answer(b, conn, i, req, s):
        if conn == 0 and i == 0:
            s.sendall(first_answer)
            threading.Event().wait(0.05)
            if later is None:
                s.shutdown(socket.SHUT_WR)
                written.set()
                return False
            s.sendall(later)
            written.set()
            return True
        s.sendall(FRESH)
        return True

    rb = recorder(answer)
    h = make_halo(servers(rb))
    first = raw(h, first_req.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert first.startswith(first_answer.split(b"\r\n")[0]), first
    assert b"POISONED" not in first
    assert written.wait(30)
    second = raw(h, b"POST /next HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
    assert second.startswith(b"HTTP/1.1 200 OK\r\n"), second
    assert second.endswith(b"\r\n\r\nfresh"), second
    assert b"POISONED" not in second
    # The POST reached the server once, on a new connection.
    posts = [(c, r) for c, r in rb.requests if r.startswith(b"POST")]
    assert len(posts) == 1 and posts[0][0] == 1, rb.requests


def refused(h, rb, request, status):
    """`request` (with a pipelined GET behind it) gets `status`, one
    response only, the connection closed, and no byte reaches the server."""
    resp = raw(h, request + b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 %d " % status), resp[:300]
    assert resp.count(b"HTTP/1.1 ") == 1, resp
    assert b"<timeout>" not in resp
    assert rb.requests == [], rb.requests


# === 2. transfer codings other than exactly chunked: 501 ===

CODINGS = {
    "xchunked": b"Transfer-Encoding: xchunked, chunked\r\n",
    "gzip": b"Transfer-Encoding: gzip, chunked\r\n",
    "identity": b"Transfer-Encoding: identity, chunked\r\n",
    "two_fields": b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
    "empty_item": b"Transfer-Encoding: ,chunked, x\r\nTransfer-Encoding: chunked\r\n",
}


@pytest.mark.parametrize("case", sorted(CODINGS))
def test_transfer_coding_other_than_chunked_is_501(make_halo, recorder, case):
    rb = recorder()
    h = make_halo(servers(rb))
    status = 400 if case == "empty_item" else 501
    refused(h, rb, b"POST / HTTP/1.1\r\nHost: t\r\n" + CODINGS[case] + b"\r\n3\r\nabc\r\n0\r\n\r\n", status)


def test_plain_chunked_still_forwarded(make_halo, recorder):
    rb = recorder()
    h = make_halo(servers(rb))
    resp = raw(h, b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 200 "), resp
    [(_, req)] = rb.requests
    assert b"\r\nTransfer-Encoding: chunked\r\n" in req
    assert req.endswith(b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n")


# === 3. absolute-form: the target's authority is the Host ===

ABSOLUTE = {
    # target sent, Host sent, target forwarded, Host forwarded
    "other_host": (b"GET http://evil.example/x?y=1 HTTP/1.1", b"good.example", b"GET /x?y=1 HTTP/1.1", b"evil.example"),
    "same_host": (b"GET http://good.example/x HTTP/1.1", b"good.example", b"GET /x HTTP/1.1", b"good.example"),
    "empty_path": (b"GET HTTP://Good.Example:8080 HTTP/1.1", b"x", b"GET / HTTP/1.1", b"Good.Example:8080"),
    "empty_path_query": (b"GET http://a.example?q HTTP/1.1", b"x", b"GET /?q HTTP/1.1", b"a.example"),
    "options_empty_path": (b"OPTIONS http://a.example HTTP/1.1", b"x", b"OPTIONS * HTTP/1.1", b"a.example"),
    "https": (b"GET https://a.example/p HTTP/1.1", b"x", b"GET /p HTTP/1.1", b"a.example"),
    "http10_no_host": (b"GET http://a.example/p HTTP/1.0", None, b"GET /p HTTP/1.1", b"a.example"),
}


@pytest.mark.parametrize("case", sorted(ABSOLUTE))
def test_absolute_form_target_replaces_host(make_halo, recorder, case):
    line, host, fwd_line, fwd_host = ABSOLUTE[case]
    rb = recorder()
    h = make_halo(servers(rb))
    head = line + b"\r\n" + (b"Host: " + host + b"\r\n" if host else b"") + b"Connection: close\r\n\r\n"
    resp = raw(h, head)
    assert resp.startswith(b"HTTP/1.1 200 "), resp
    [(_, req)] = rb.requests
    lines = req.split(b"\r\n")
    assert lines[0] == fwd_line, req
    hosts = [l for l in lines if l.lower().startswith(b"host:")]
    assert hosts == [b"Host: " + fwd_host], req


# === 4. Content-Length that overflows the body counters ===


@pytest.mark.parametrize("cl", [b"9223372036854775808", b"18446744073709551615", b"18446744073709551616", b"009223372036854775808"])
def test_huge_content_length_is_400(make_halo, recorder, cl):
    rb = recorder()
    h = make_halo(servers(rb))
    refused(h, rb, b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: " + cl + b"\r\n\r\nabc", 400)


# === 6. targets HAProxy refuses ===

TARGETS = {
    "fragment": b"GET /x#frag HTTP/1.1",
    "fragment_absolute": b"GET http://a.example/x#f HTTP/1.1",
    "no_slash": b"GET x HTTP/1.1",
    "asterisk_not_options": b"GET * HTTP/1.1",
    "authority_form_not_connect": b"GET a.example:80 HTTP/1.1",
    "other_scheme": b"GET ftp://a.example/x HTTP/1.1",
    "userinfo": b"GET http://user@a.example/x HTTP/1.1",
    "empty_authority": b"GET http:///x HTTP/1.1",
}


@pytest.mark.parametrize("case", sorted(TARGETS))
def test_bad_targets_are_400(make_halo, recorder, case):
    rb = recorder()
    h = make_halo(servers(rb))
    refused(h, rb, TARGETS[case] + b"\r\nHost: t\r\n\r\n", 400)


def test_asterisk_options_forwarded(make_halo, recorder):
    rb = recorder()
    h = make_halo(servers(rb))
    resp = raw(h, b"OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 200 "), resp
    [(_, req)] = rb.requests
    assert req.startswith(b"OPTIONS * HTTP/1.1\r\n")


# === 5. a response that arrives while the request body is still on its way ===


def read_one(s):
    """One response with a Content-Length body from `s`: (head, body), or
    what came before a timeout or close (then body is None)."""
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            b = s.recv(65536)
            if not b:
                return buf, None
            buf += b
        head, body = buf.split(b"\r\n\r\n", 1)
        n = int(re.search(rb"(?im)^content-length: *(\d+)\r?$", head).group(1))
        while len(body) < n:
            b = s.recv(65536)
            if not b:
                return buf, None
            body += b
        return head, body
    except socket.timeout:
        return buf + b"<timeout>", None


def test_early_response_from_nginx_is_relayed(backends_alive, make_halo):
    """POST with Content-Length: 1 and no body: nginx answers 405 at once
    (a static file takes no POST); halo relays it instead of waiting for a
    body that never comes. The client timeout is far longer than the
    client's own wait, so waiting for the body cannot pass."""
    h = make_halo(servers_of(backends_alive[:1]), timeouts={"client": "300s"})
    with socket.create_connection(("127.0.0.1", h.port), timeout=60) as s:
        s.sendall(b"POST /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n")
        head, body = read_one(s)
    assert head.startswith(b"HTTP/1.1 405 "), head
    assert body is not None


def test_early_response_to_unending_upload(make_halo, recorder):
    """A server that refuses an upload of 2^63 - 1 bytes on its head alone
    (413 and close): the client gets the 413, the server saw the length."""

    def answer(b, conn, i, req, s):
        s.sendall(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        return False

    rb = recorder(answer, early=True)
    h = make_halo(servers(rb), timeouts={"client": "300s"})
    with socket.create_connection(("127.0.0.1", h.port), timeout=60) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 9223372036854775807\r\n\r\nabc")
        head, body = read_one(s)
    assert head.startswith(b"HTTP/1.1 413 "), head
    [(_, req)] = rb.requests
    assert b"\r\nContent-Length: 9223372036854775807\r\n" in req


def test_full_duplex_body_after_response_keeps_both_connections(make_halo, recorder):
    """The server answers on the head and then reads the body; the client
    sends the rest of its body only after it has the response. Both
    connections stay usable: the body reaches the server whole and the next
    request is answered on the same connections."""
    rb = recorder(early=True)
    h = make_halo(servers(rb), timeouts={"client": "300s"})
    with socket.create_connection(("127.0.0.1", h.port), timeout=60) as s:
        s.sendall(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234")
        head, body = read_one(s)
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert body == b"ok"
        s.sendall(b"56789")
        s.sendall(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n")
        head, body = read_one(s)
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert body == b"ok"
    assert [r for _, r in rb.requests][0].endswith(b"\r\n\r\n0123456789")
    assert rb.requests[1][1].startswith(b"GET /next ")
    # One server connection for both.
    assert {c for c, _ in rb.requests} == {0}


# === framing of empty responses ===


@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_empty_response_keeps_its_content_length(make_halo, recorder, method):
    """`Content-Length: 0` (and the length a HEAD answer states) reach the
    client: without it a 200 to GET would be read until the connection
    closes, and on a kept-alive connection that is never."""

    def answer(b, conn, i, req, s):
        if req.startswith(b"HEAD"):
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
        else:
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        return True

    rb = recorder(answer)
    h = make_halo(servers(rb))
    with socket.create_connection(("127.0.0.1", h.port), timeout=60) as s:
        s.sendall(method + b" / HTTP/1.1\r\nHost: t\r\n\r\n")
        head, _ = read_one(s) if method == b"GET" else (s.recv(65536), None)
    want = b"1234" if method == b"HEAD" else b"0"
    assert re.search(rb"(?im)^content-length: " + want + rb"\r?$", head), head


# === h2c upgrade is not forwarded ===


def test_h2c_upgrade_is_not_forwarded(make_halo, recorder):
    """`Upgrade: h2c` (deprecated by RFC 9113 3.1) would turn the
    connection into an HTTP/2 tunnel past the proxy (h2c smuggling): the
    request goes on as a plain one, and a server that switches anyway gets
    502, no tunnel."""

    def answer(b, conn, i, req, s):
        s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
        return False

    rb = recorder(answer)
    h = make_halo(servers(rb))
    resp = raw(h, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 502 "), resp
    [(_, req)] = rb.requests
    assert req == b"GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 127.0.0.1\r\nForwarded: for=127.0.0.1;proto=http\r\nX-Forwarded-Proto: http\r\n\r\n", req


def test_server_that_takes_no_body_and_never_answers_is_504(make_halo, recorder):
    """Full duplex keeps `timeouts.server`: a server that reads the head,
    then neither reads the body nor answers, gets the request a 504."""
    hold = threading.Event()

    def answer(b, conn, i, req, s):
        hold.wait(60)
        return False

    rb = recorder(answer, early=True)
    h = make_halo(servers(rb), timeouts={"server": "1s"})
    body = b"x" * (16 * 1024 * 1024)
    try:
        with socket.create_connection(("127.0.0.1", h.port), timeout=60) as s:

            def send():
                try:
                    s.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                except OSError:
                    pass

            t = threading.Thread(target=send, daemon=True)
            t.start()
            head, _ = read_one(s)
        assert head.startswith(b"HTTP/1.1 504 "), head
    finally:
        hold.set()
