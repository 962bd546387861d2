"""Tests for what the proxy claims and nothing tested through real
traffic before (issue 13, "Missing tests"): passive health from proxied
requests, no replay of a POST, service and server maxconn with the queue,
and the client and keep_alive timeouts. On each I/O driver.

Timings are never asserted: every wait is bounded and long; a test that
checks something does *not* happen gives it a short while and would only
pass wrongly, never fail wrongly, on a slow machine.
"""

import re
import socket
import threading
import time

import pytest

from localfix import free_port
from proxyfix import servers_of
from halolab import wait_for

OK_A = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA"
OK_B = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nB"


def get(h, path="/", timeout=60):
    """One GET on its own connection: (status, body)."""
    with socket.create_connection(("127.0.0.1", h.port), timeout=timeout) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path.encode())
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def answering(resp):
    def answer(b, conn, i, req, s):
        s.sendall(resp)
        return True

    return answer


# Checks that never run during the test (60 s apart, first one spread over
# 60 s, and 100 successes to rise): only proxied traffic moves the state.
QUIET = {"type": "tcp", "interval": "60s", "fast_interval": "60s", "timeout": "1s", "rise": 100, "fall": 1}


def test_passive_5xx_from_real_traffic_takes_a_server_out(make_halo, recorder):
    a = recorder(answering(b"HTTP/1.1 500 Oops\r\nContent-Length: 1\r\n\r\nA"))
    b = recorder(answering(OK_B))
    h = make_halo(
        [dict(name="a", address=a.address), dict(name="b", address=b.address)],
        health=dict(QUIET, observe=["5xx"]),
    )
    got = [get(h) for _ in range(2)]
    # Round robin sent one of the two to a, which answered 500 (relayed).
    assert sorted(got) == [(200, b"B"), (500, b"A")], got
    # That 500 was a failed check with fall = 1: a is out.
    got = [get(h) for _ in range(10)]
    assert got == [(200, b"B")] * 10, got
    assert len(a.requests) == 1


def test_passive_5xx_not_counted_unless_observed(make_halo, recorder):
    a = recorder(answering(b"HTTP/1.1 500 Oops\r\nContent-Length: 1\r\n\r\nA"))
    b = recorder(answering(OK_B))
    h = make_halo(
        [dict(name="a", address=a.address), dict(name="b", address=b.address)],
        health=dict(QUIET, observe=["connect"]),
    )
    got = [get(h) for _ in range(10)]
    assert got.count((500, b"A")) == 5, got


def test_passive_connect_failure_from_real_traffic_takes_a_server_out(make_halo, recorder):
    dead = free_port()  # nothing listens there
    b = recorder(answering(OK_B))
    h = make_halo(
        # dead second: the first active checks are spread over
        # fast_interval in server order, so its own comes 30 s in.
        [dict(name="b", address=b.address), dict(name="dead", address=f"127.0.0.1:{dead}")],
        health=dict(QUIET, observe=["connect"]),
        retries=1,
    )
    # Every request is answered by b; the first one that went to dead
    # was retried there.
    got = [get(h) for _ in range(10)]
    assert got == [(200, b"B")] * 10, got
    wait_for(lambda: len(h.access_lines()) >= 10, 30, "access lines")
    retries = [int(re.search(r"retries=(\d+)", l).group(1)) for l in h.access_lines()]
    # One connect failure, then dead is down and never tried again.
    assert sum(retries) == 1, h.access_lines()


# === no replay of a POST ===


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_request_on_pooled_connection_the_server_drops(make_halo, recorder, method):
    """The server takes the second request on a kept-alive connection and
    closes without answering: a GET is sent again on a new connection; a
    POST (not idempotent: the server may have acted on it) is not, and the
    client gets 502."""

    def answer(b, conn, i, req, s):
        if conn == 0 and i == 1:
            return False  # read it, close, answer nothing
        s.sendall(OK_A)
        return True

    rb = recorder(answer)
    h = make_halo([dict(name="raw", address=rb.address)])
    assert get(h) == (200, b"A")
    body = b"x=1" if method == "POST" else b""
    cl = b"Content-Length: 3\r\n" if body else b""
    with socket.create_connection(("127.0.0.1", h.port), timeout=60) as s:
        s.sendall(method.encode() + b" /second HTTP/1.1\r\nHost: t\r\n" + cl + b"Connection: close\r\n\r\n" + body)
        out = b""
        while True:
            r = s.recv(65536)
            if not r:
                break
            out += r
    seconds = [c for c, r in rb.requests if b" /second " in r]
    if method == "POST":
        assert out.startswith(b"HTTP/1.1 502 "), out
        assert seconds == [0], rb.requests
    else:
        assert out.startswith(b"HTTP/1.1 200 "), out
        assert seconds == [0, 1], rb.requests


# === service maxconn, server maxconn and the queue ===


def test_service_maxconn_holds_further_clients_until_one_closes(backends_alive, make_halo):
    h = make_halo(servers_of(backends_alive[:1]), maxconn=1)
    first = socket.create_connection(("127.0.0.1", h.port), timeout=60)
    first.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert first.recv(65536).startswith(b"HTTP/1.1 200 ")
    second = socket.create_connection(("127.0.0.1", h.port), timeout=60)
    try:
        second.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        # Not served while the first connection is open (it is idle and
        # kept alive: keep_alive is 10 s, longer than this look).
        second.settimeout(1.0)
        with pytest.raises(socket.timeout):
            second.recv(65536)
        first.close()
        second.settimeout(60)
        assert second.recv(65536).startswith(b"HTTP/1.1 200 ")
    finally:
        first.close()
        second.close()


def held_backend(recorder):
    """A server whose answer to /hold waits for `release`."""
    release = threading.Event()

    def answer(b, conn, i, req, s):
        if b" /hold " in req.split(b"\r\n")[0] + b" ":
            release.wait(60)
        s.sendall(OK_A)
        return True

    return recorder(answer), release


def start_get(h, path):
    """A GET in a thread; its (status, body) lands in the returned list."""
    box = []
    t = threading.Thread(target=lambda: box.append(get(h, path)), daemon=True)
    t.start()
    return t, box


def test_request_waits_in_queue_then_is_served(make_halo, recorder):
    rb, release = held_backend(recorder)
    h = make_halo([dict(name="raw", address=rb.address, maxconn=1)], timeouts={"queue": "120s"})
    t1, box1 = start_get(h, "/hold")
    wait_for(lambda: len(rb.requests) == 1, 30, "held request at the server")
    t2, box2 = start_get(h, "/queued")
    # The second waits for the slot: it is not at the server.
    time.sleep(0.5)
    assert len(rb.requests) == 1
    release.set()
    t1.join(60)
    t2.join(60)
    assert box1 == [(200, b"A")] and box2 == [(200, b"A")]
    lines = h.access_lines()
    queued = [l for l in lines if "GET /queued" in l]
    assert queued and "status=200" in queued[0], lines


def test_queue_timeout_is_503(make_halo, recorder):
    rb, release = held_backend(recorder)
    h = make_halo([dict(name="raw", address=rb.address, maxconn=1)], timeouts={"queue": "1s"})
    t1, box1 = start_get(h, "/hold")
    try:
        wait_for(lambda: len(rb.requests) == 1, 30, "held request at the server")
        status, body = get(h, "/late")
        assert status == 503 and b"halo" in body
        wait_for(lambda: "queue timeout" in h.log(), 30, "access line")
        assert len(rb.requests) == 1
    finally:
        release.set()
        t1.join(60)
    assert box1 == [(200, b"A")]


# === client and keep_alive timeouts ===


def test_client_timeout_in_request_body_is_408(make_halo, recorder):
    rb = recorder(early=False)
    h = make_halo([dict(name="raw", address=rb.address)], timeouts={"client": "1s"})
    with socket.create_connection(("127.0.0.1", h.port), timeout=60) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    assert out.startswith(b"HTTP/1.1 408 "), out
    # The server got the head and the 3 bytes, never a whole request.
    assert rb.requests == []


def test_keep_alive_timeout_closes_idle_client(backends_alive, make_halo):
    h = make_halo(servers_of(backends_alive[:1]), timeouts={"keep_alive": "1s"})
    with socket.create_connection(("127.0.0.1", h.port), timeout=60) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        # Idle: halo closes without a word (no 408 page for an idle
        # keep-alive connection).
        rest = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            rest += b
    assert rest == b"" or not rest.startswith(b"HTTP/"), rest
