"""halo's proxy against hostile clients and misbehaving servers (issue 13),
on each I/O driver. The servers here are RecordingBackends: they record
the exact bytes each request reached them with and answer with exact
bytes, so every test asserts what the server saw, not only what the
client got.

Timings are never asserted; waits are bounded.
"""

import socket
import threading

import pytest

from proxyfix import RecordingBackend

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
