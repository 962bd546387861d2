"""The differential probe table of issue 13: raw requests, what halo must
answer and the exact bytes its server may see, and what Debian's HAProxy
does with the same bytes. `test_probes.py` runs it; `python3
tests/proxy/probes.py` prints what both proxies do now (to review a
change) and the Markdown table docs/proxy.md holds."""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from localfix import free_port, kill, wait_port  # noqa: E402
from proxyfix import RecordingBackend  # noqa: E402

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

BIG_LINE = b"GET /" + b"a" * (64 * 1024) + b" HTTP/1.1\r\nHost: t\r\n\r\n"
MANY_HEADERS = b"GET / HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(10000)) + b"\r\n"
PIPELINED_GET = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"


def P(name, request):
    return (name, request)


# name, bytes sent by the client (after which it half-closes). A probe
# named `*_then_get` has a second, valid request pipelined behind it: a
# proxy that refuses the first must not forward the second.
PROBES = [
    P("plain GET", b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"),
    P("two pipelined GETs", b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\n"),
    P("CL.TE", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX" + PIPELINED_GET),
    P("TE.CL", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n" + PIPELINED_GET),
    P("TE.TE chunked + x", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n" + PIPELINED_GET),
    P("TE xchunked, chunked", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked, chunked\r\n\r\n0\r\n\r\n" + PIPELINED_GET),
    P("TE gzip, chunked", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + PIPELINED_GET),
    P("TE identity, chunked", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n" + PIPELINED_GET),
    P("TE chunked, identity", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + PIPELINED_GET),
    P("TE Chunked (case)", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
    P("TE with space before colon", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + PIPELINED_GET),
    P("TE value with VT", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n" + PIPELINED_GET),
    P("TE in HTTP/1.0", b"POST / HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    P("CL twice, same", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
    P("CL twice, different", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd" + PIPELINED_GET),
    P("CL list 3, 3", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3, 3\r\n\r\nabc"),
    P("CL +3", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +3\r\n\r\nabc" + PIPELINED_GET),
    P("CL 0x3", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0x3\r\n\r\nabc" + PIPELINED_GET),
    P("CL 003", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 003\r\n\r\nabc"),
    P("CL 2^63", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 9223372036854775808\r\n\r\nabc"),
    P("CL 2^64", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 18446744073709551616\r\n\r\nabc"),
    P("chunk ext", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\n\r\n"),
    P("chunk size 16 hex digits", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000003\r\nabc\r\n0\r\n\r\n"),
    P("chunk size overflow", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nabc\r\n0\r\n\r\n"),
    P("chunk size -1", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n"),
    P("chunk size 0x3", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n"),
    P("chunk data too long", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n"),
    P("chunk line bare LF", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n"),
    P("chunked trailer", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"),
    P("bare LF line ends", b"GET / HTTP/1.1\nHost: t\n\n"),
    P("bare CR in head", b"GET / HTTP/1.1\r\nHost: t\rX: 1\r\n\r\n" + PIPELINED_GET),
    P("NUL in header value", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n" + PIPELINED_GET),
    P("NUL in target", b"GET /a\x00b HTTP/1.1\r\nHost: t\r\n\r\n" + PIPELINED_GET),
    P("obs-fold", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n 2\r\n\r\n" + PIPELINED_GET),
    P("space in header name", b"GET / HTTP/1.1\r\nHost: t\r\nX A: 1\r\n\r\n" + PIPELINED_GET),
    P("no Host", b"GET / HTTP/1.1\r\n\r\n"),
    P("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    P("HTTP/1.0 without Host", b"GET / HTTP/1.0\r\n\r\n"),
    P("absolute-form, other Host", b"GET http://evil.example/x HTTP/1.1\r\nHost: good.example\r\n\r\n"),
    P("absolute-form, empty path", b"GET http://a.example HTTP/1.1\r\nHost: a.example\r\n\r\n"),
    P("fragment in target", b"GET /x#f HTTP/1.1\r\nHost: t\r\n\r\n" + PIPELINED_GET),
    P("target without /", b"GET x HTTP/1.1\r\nHost: t\r\n\r\n" + PIPELINED_GET),
    P("GET *", b"GET * HTTP/1.1\r\nHost: t\r\n\r\n" + PIPELINED_GET),
    P("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n"),
    P("authority-form GET", b"GET a.example:80 HTTP/1.1\r\nHost: t\r\n\r\n" + PIPELINED_GET),
    P("CONNECT", b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n"),
    P("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: t\r\n\r\n"),
    P("HTTP/0.9 request", b"GET /\r\n\r\n"),
    P("h2c upgrade", b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"),
    P("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    P("64 KiB request line", BIG_LINE),
    P("10,000 headers", MANY_HEADERS),
    P("Expect: 100-continue", b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"),
    P("hop-by-hop via Connection", b"GET / HTTP/1.1\r\nHost: t\r\nConnection: X-Secret\r\nX-Secret: 1\r\n\r\n"),
    P("bad request then GET", b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n" + PIPELINED_GET),
]


# What each proxy does with each probe, as observed (HAProxy: Debian's
# 2.6.12 with the configuration in `HAProxy` below). halo's column is
# asserted exactly, server bytes included ({server} stands for the
# server's address); HAProxy's by its first answer and whether the first
# request reached the server, because whether HAProxy still serves a
# request pipelined behind it after the client's half-close varies from
# run to run.
# name: (halo statuses, exact requests the server got from halo,
#        HAProxy 2.6 statuses, how many requests reached the server)
EXPECT = {
    'plain GET': ([200], [b'GET / HTTP/1.1\r\nHost: t\r\n\r\n'], [200], 1),
    'two pipelined GETs': ([200, 200], [b'GET /1 HTTP/1.1\r\nHost: t\r\n\r\n', b'GET /2 HTTP/1.1\r\nHost: t\r\n\r\n'], [200, 200], 2),
    'CL.TE': ([400], [], [200], 1),
    'TE.CL': ([400], [], [200], 1),
    'TE.TE chunked + x': ([400], [], [400], 0),
    'TE xchunked, chunked': ([501], [], [422], 0),
    'TE gzip, chunked': ([501], [], [422], 0),
    'TE identity, chunked': ([501], [], [422], 0),
    'TE chunked, identity': ([400], [], [400], 0),
    'TE Chunked (case)': ([200], [b'POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'], [200], 1),
    'TE with space before colon': ([400], [], [400], 0),
    'TE value with VT': ([400], [], [400], 0),
    'TE in HTTP/1.0': ([400], [], [200], 1),
    'CL twice, same': ([200], [b'POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc'], [200], 1),
    'CL twice, different': ([400], [], [400], 0),
    'CL list 3, 3': ([200], [b'POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc'], [200], 1),
    'CL +3': ([400], [], [400], 0),
    'CL 0x3': ([400], [], [400], 0),
    'CL 003': ([200], [b'POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc'], [200], 1),
    'CL 2^63': ([400], [], [400], 0),
    'CL 2^64': ([400], [], [504, 400], 0),
    'chunk ext': ([200], [b'POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'], [200], 1),
    'chunk size 16 hex digits': ([400], [], [200], 1),
    'chunk size overflow': ([400], [], [400], 0),
    'chunk size -1': ([400], [], [400], 0),
    'chunk size 0x3': ([400], [], [400], 0),
    'chunk data too long': ([400], [], [400], 0),
    'chunk line bare LF': ([400], [], [200], 1),
    'chunked trailer': ([200], [b'POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'], [200], 1),
    'bare LF line ends': ([200], [b'GET / HTTP/1.1\r\nHost: t\r\n\r\n'], [200], 1),
    'bare CR in head': ([400], [], [400], 0),
    'NUL in header value': ([400], [], [200, 200], 2),
    'NUL in target': ([400], [], [400], 0),
    'obs-fold': ([400], [], [200, 200], 2),
    'space in header name': ([400], [], [400], 0),
    'no Host': ([400], [], [200], 1),
    'two Hosts': ([400], [], [400], 0),
    'HTTP/1.0 without Host': ([200], [b'GET / HTTP/1.1\r\nHost: {server}\r\n\r\n'], [200], 1),
    'absolute-form, other Host': ([200], [b'GET /x HTTP/1.1\r\nHost: evil.example\r\n\r\n'], [400], 0),
    'absolute-form, empty path': ([200], [b'GET / HTTP/1.1\r\nHost: a.example\r\n\r\n'], [200], 1),
    'fragment in target': ([400], [], [400], 0),
    'target without /': ([400], [], [400], 0),
    'GET *': ([400], [], [200], 1),
    'OPTIONS *': ([200], [b'OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n'], [200], 1),
    'authority-form GET': ([400], [], [400], 0),
    'CONNECT': ([400], [], [200], 1),
    'HTTP/1.2': ([400], [], [200], 1),
    'HTTP/0.9 request': ([400], [], [400], 0),
    'h2c upgrade': ([200], [b'GET / HTTP/1.1\r\nHost: t\r\n\r\n'], [200], 1),
    'HTTP/2 preface': ([400], [], [], 0),
    '64 KiB request line': ([400], [], [400], 0),
    '10,000 headers': ([400], [], [400], 0),
    'Expect: 100-continue': ([100, 200], [b'POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc'], [200], 1),
    'hop-by-hop via Connection': ([200], [b'GET / HTTP/1.1\r\nHost: t\r\n\r\n'], [200], 1),
    'bad request then GET': ([400], [], [400], 0),
}


def statuses(data):
    """The status codes of the responses in `data`, in order (bodies are
    framed by Content-Length or chunked; anything unparsable ends it)."""
    out = []
    while data.startswith(b"HTTP/"):
        end = data.find(b"\r\n\r\n")
        if end < 0:
            break
        head = data[:end].decode("latin-1")
        data = data[end + 4 :]
        code = int(head.split(" ")[1])
        out.append(code)
        low = head.lower()
        m = re.search(r"\r\ncontent-length: *(\d+)", low)
        if code < 200 or code in (204, 304):
            continue
        if "\r\ntransfer-encoding: chunked" in low:
            while True:
                line, _, data = data.partition(b"\r\n")
                n = int(line.split(b";")[0], 16)
                data = data[n + 2 :] if n else data.partition(b"\r\n\r\n")[2] if not data.startswith(b"\r\n") else data[2:]
                if n == 0:
                    break
        elif m:
            data = data[int(m.group(1)) :]
        else:
            break
    return out


def send_probe(port, request, timeout=20):
    """Send `request`, half-close, read until the proxy closes: (statuses,
    raw answer). A proxy that keeps the connection open after answering
    everything it could is cut after `timeout` seconds (no result depends
    on that)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(request)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        data = b""
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
        except (socket.timeout, ConnectionResetError):
            pass
    return statuses(data), data


class HAProxy:
    """Debian's HAProxy in front of one server, defaults as shipped: no
    option changes the parsing it is compared on. `bind_options` go on the
    bind line (test_h2: `ssl crt PEM alpn h2,http/1.1`)."""

    def __init__(self, server_port, bind_options=""):
        self.dir = tempfile.mkdtemp(prefix="halo-haproxy-")
        self.port = free_port()
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(self.cfg, "w") as f:
            f.write(f"""global
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend web
    bind 127.0.0.1:{self.port}{' ' + bind_options if bind_options else ''}
    default_backend web
backend web
    server s1 127.0.0.1:{server_port}
""")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, proc=self.proc, timeout=30)

    def stop(self):
        kill(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def run_probe(port, backend, request):
    """(statuses, requests the server saw) for one probe."""
    backend.requests.clear()
    got, _ = send_probe(port, request)
    return got, [r for _, r in backend.requests]


def markdown():
    """The table docs/proxy.md shows: probe, halo, HAProxy 2.6."""

    def answer(st):
        return ", ".join(map(str, st)) if st else "closed, no answer"

    lines = [
        "| Probe | halo | requests halo forwarded | HAProxy 2.6 | HAProxy forwarded it |",
        "|---|---|---|---|---|",
    ]
    for name, _ in PROBES:
        st, seen, hst, hn = EXPECT[name]
        lines.append(f"| {name} | {answer(st)} | {len(seen)} | {answer(hst[:1])} | {'yes' if hn else 'no'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    # Discovery: run every probe against halo (HALO_BIN, epoll) and HAProxy
    # and print what each did, as Python literals to review.
    from proxyfix import Halo

    tmp = tempfile.mkdtemp(prefix="halo-probes-")
    rb = RecordingBackend()
    h = Halo(tmp, "epoll", [dict(name="s1", address=rb.address)], forwardfor=False).start()
    ha = HAProxy(rb.port) if os.path.exists(HAPROXY) else None
    try:
        for name, req in PROBES:
            st, seen = run_probe(h.port, rb, req)
            hst, hseen = run_probe(ha.port, rb, req) if ha else (None, [])
            print(repr((name, st, seen, hst, len(hseen))))
    finally:
        h.stop()
        if ha:
            ha.stop()
        rb.close()
