"""HTTP/2 to clients (issue 17): a TLS bind with `h2 = true` offers ALPN
h2, and each stream's request goes to the real nginx backends over
HTTP/1.1, on both I/O drivers. curl --http2 and h2load (Debian's
nghttp2-client) are the well-behaved clients; python3-h2 drives the
misbehaving ones by hand (never reading, resetting a stream, forbidden
fields). h2spec is not packaged by Debian.

Certificates are made here with `openssl`; everything listens on 127.0.0.1.
"""

import os
import re
import socket
import ssl
import subprocess
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest
from h2.frame_buffer import FrameBuffer
from hyperframe.frame import GoAwayFrame, PingFrame

from localfix import free_port, halo_bin, toml_str
from probes import HAPROXY, HAProxy
from proxyfix import Halo, servers_of
from test_tls import make_cert

SNI = "www.site.example"


class H2Halo(Halo):
    """proxyfix's halo with its bind made a TLS one (`h2` as given)."""

    def __init__(self, tmp, io, servers, cert, h2=True, **opts):
        super().__init__(tmp, io, servers, **opts)
        text = self.cfg.read_text()
        plain = f'bind = ["127.0.0.1:{self.port}"]'
        tls = (f'bind = [{{ address = "127.0.0.1:{self.port}", tls = {{ certificates = '
               f'[{toml_str(cert)}], h2 = {"true" if h2 else "false"} }} }}]')
        assert plain in text
        self.cfg.write_text(text.replace(plain, tls))

    def reload(self):
        r = subprocess.run([halo_bin(), "reload", "--socket", str(self.socket)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr

    def url(self, path):
        return f"https://{SNI}:{self.port}{path}"

    def h2_lines(self, at_least=0, timeout=30):
        """The access lines of h2 streams; waits for `at_least` of them
        (a stream's line comes after its response, when the exchange ends)."""
        end = time.monotonic() + timeout
        while True:
            lines = [l for l in self.access_lines() if 'proto="h2"' in l]
            if len(lines) >= at_least or time.monotonic() > end:
                return lines
            time.sleep(0.1)


@pytest.fixture
def h2_halo(io, tmp_path, backends_alive):
    site = make_cert(str(tmp_path), "site", [SNI])
    started = []

    def make(servers=None, **opts):
        h = H2Halo(str(tmp_path), io, servers or servers_of(backends_alive), site["pem"], **opts)
        h.ca = site["crt"]
        started.append(h)
        return h.start()

    yield make
    for h in started:
        h.stop()


def curl(h, *args, stdin=None):
    return subprocess.run(
        ["curl", "-sS", "--max-time", "30", "--cacert", h.ca,
         "--resolve", f"{SNI}:{h.port}:127.0.0.1", *args],
        capture_output=True, text=stdin is None, input=stdin)


def h2load(h, *args):
    r = subprocess.run(["h2load", *args, f"https://127.0.0.1:{h.port}/"],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed", r.stdout)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", r.stdout)
    assert m and codes, r.stdout + r.stderr
    return [int(x) for x in m.groups()], [int(x) for x in codes.groups()]


class RawH2:
    """An HTTP/2 client driven by hand (python3-h2) over TLS."""

    def __init__(self, port, window=None, validate=True):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.s = ctx.wrap_socket(raw, server_hostname=SNI)
        assert self.s.selected_alpn_protocol() == "h2"
        cfg = h2.config.H2Configuration(client_side=True, validate_outbound_headers=validate,
                                        normalize_outbound_headers=validate)
        self.c = h2.connection.H2Connection(cfg)
        self.c.initiate_connection()
        if window is not None:
            self.c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.flush()
        # Per stream: status, body bytes, ended, reset error code.
        self.streams = {}
        # Frames are split here, so that a GOAWAY is seen with what
        # follows it (python3-h2 refuses any frame after one).
        self.frames = FrameBuffer(server=False)
        self.frames.max_frame_size = 16384  # RFC 9113's default, halo's
        self.goaway = None
        self.goaways = []
        self.closed = False

    def flush(self):
        data = self.c.data_to_send()
        if data:
            self.s.sendall(data)

    def request(self, path, extra=(), method="GET"):
        sid = self.c.get_next_available_stream_id()
        self.c.send_headers(sid, [(":method", method), (":scheme", "https"), (":authority", SNI),
                                  (":path", path), *extra], end_stream=True)
        self.flush()
        self.streams[sid] = dict(status=None, body=b"", ended=False, reset=None)
        return sid

    def post(self, path, body, length=True):
        """A POST with `body`, sent as the windows allow; with a
        content-length or without one (then chunked to the server)."""
        sid = self.c.get_next_available_stream_id()
        extra = [("content-length", str(len(body)))] if length else []
        self.c.send_headers(sid, [(":method", "POST"), (":scheme", "https"), (":authority", SNI),
                                  (":path", path), *extra])
        self.streams[sid] = dict(status=None, body=b"", ended=False, reset=None)
        off = 0
        while off < len(body):
            room = min(self.c.local_flow_control_window(sid), self.c.max_outbound_frame_size)
            if room == 0:
                self.flush()
                # Wait for a WINDOW_UPDATE (handled by receive_data).
                assert self.read_until(lambda: self.c.local_flow_control_window(sid) > 0
                                       or self.streams[sid]["reset"] is not None)
                continue
            self.c.send_data(sid, body[off:off + room])
            off += room
        self.c.end_stream(sid)
        self.flush()
        return sid

    def read_until(self, done, timeout=30):
        """Read and handle frames until `done()`; False at timeout or close."""
        end = time.monotonic() + timeout
        while not done():
            if self.closed or time.monotonic() > end:
                return False
            self.s.settimeout(max(0.1, end - time.monotonic()))
            try:
                data = self.s.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, ssl.SSLError):
                data = b""
            if not data:
                self.closed = True
                return done()
            self.frames.add_data(data)
            events = []
            for frame in self.frames:
                if isinstance(frame, GoAwayFrame):
                    self.goaway = frame
                    self.goaways.append(frame)
                    continue
                if self.goaway is not None:
                    # python3-h2 takes no frame after a GOAWAY; the PING
                    # of a graceful shutdown (RFC 9113 6.8) is acked here.
                    if isinstance(frame, PingFrame) and "ACK" not in frame.flags:
                        ack = PingFrame(0, frame.opaque_data)
                        ack.flags.add("ACK")
                        self.s.sendall(ack.serialize())
                    continue
                events += self.c.receive_data(frame.serialize())
            for ev in events:
                st = self.streams.get(getattr(ev, "stream_id", None))
                if isinstance(ev, h2.events.InformationalResponseReceived):
                    st.setdefault("interim", []).append(int(dict(ev.headers)[b":status"]))
                elif isinstance(ev, h2.events.ResponseReceived):
                    st["status"] = int(dict(ev.headers)[b":status"])
                    st["headers"] = ev.headers
                elif isinstance(ev, h2.events.DataReceived):
                    st["body"] += ev.data
                    self.c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    st["ended"] = True
                elif isinstance(ev, h2.events.StreamReset):
                    st["reset"] = ev.error_code
            self.flush()
        return True

    def finished(self, sid):
        st = self.streams[sid]
        return lambda: st["ended"] or st["reset"] is not None

    def close(self):
        self.s.close()


def test_curl_get_post_and_a_big_page(h2_halo, backends_alive):
    h = h2_halo()
    r = curl(h, "-v", "--http2", h.url("/headers"))
    assert r.returncode == 0, r.stderr
    assert "ALPN: server accepted h2" in r.stderr, r.stderr
    assert "< HTTP/2 200" in r.stderr, r.stderr
    # Host from :authority, and the servers hear that the client came over TLS.
    assert f"host={SNI}:{h.port}\n" in r.stdout, r.stdout
    assert "proto=https\n" in r.stdout, r.stdout
    # A 1 MiB page arrives whole through the windows.
    path = backends_alive[0].big_file("h2-1m.bin", 1 << 20)
    for b in backends_alive[1:]:
        b.big_file("h2-1m.bin", 1 << 20)
    r = curl(h, "--http2", "-o", os.devnull, "-w", "%{http_code} %{size_download} %{http_version}", h.url(path))
    assert r.stdout == f"200 {1 << 20} 2", r.stdout + r.stderr
    # A body with a length, and one of unknown length (chunked to the
    # server), through the windows. (Not curl: Debian's 7.88 stops
    # uploading when the response ends first, which nginx's /sink does;
    # it hangs the same against nginx's own HTTP/2.)
    body = b"x" * (300 * 1024)
    c = RawH2(h.port)
    try:
        for length in (True, False):
            sid = c.post("/sink", body, length=length)
            assert c.read_until(c.finished(sid))
            st = c.streams[sid]
            assert st["status"] == 200 and st["ended"], st
            want = b"len=307200 te=\n" if length else b"te=chunked\n"
            assert st["body"].endswith(want), st["body"]
    finally:
        c.close()
    # A client that offers only http/1.1 gets it on the same bind.
    r = curl(h, "-v", "--http1.1", h.url("/headers"))
    assert "ALPN: server accepted http/1.1" in r.stderr, r.stderr
    lines = h.h2_lines(4)
    assert len(lines) == 4, lines
    assert all("status=200" in l for l in lines), lines
    assert any("POST /sink" in l for l in lines)


def test_expect_100_continue(h2_halo):
    """A client that waits for 100 Continue before its body gets it as an
    interim HEADERS frame (halo answers Expect itself, as over HTTP/1)."""
    h = h2_halo()
    c = RawH2(h.port)
    try:
        sid = c.c.get_next_available_stream_id()
        head = [(k, "/sink" if k == ":path" else v) for k, v in hdrs(method="POST")]
        c.c.send_headers(sid, head + [("content-length", "3"), ("expect", "100-continue")])
        c.flush()
        c.streams[sid] = dict(status=None, body=b"", ended=False, reset=None)
        assert c.read_until(lambda: c.streams[sid].get("interim"))
        assert c.streams[sid]["interim"] == [100] and c.streams[sid]["status"] is None
        c.c.send_data(sid, b"abc", end_stream=True)
        c.flush()
        assert c.read_until(c.finished(sid))
        assert c.streams[sid]["status"] == 200, c.streams[sid]
        assert c.streams[sid]["body"] == b"len=3 te=\n"
    finally:
        c.close()


def test_h2_is_opt_in(h2_halo):
    h = h2_halo(h2=False)
    r = curl(h, "-v", "--http2", h.url("/headers"))
    assert r.returncode == 0, r.stderr
    assert "ALPN: server accepted http/1.1" in r.stderr, r.stderr


def test_many_concurrent_streams_on_one_connection(h2_halo):
    h = h2_halo()
    (total, started, done, ok, failed), (c2, _, c4, c5) = h2load(h, "-n", "600", "-c", "1", "-m", "100")
    assert (done, ok, failed, c2) == (600, 600, 0, 600)
    assert len(h.h2_lines(600)) == 600


def test_a_dead_server_fails_its_streams_only(h2_halo, backends_alive):
    dead = f"127.0.0.1:{free_port()}"
    servers = servers_of(backends_alive[:1]) + [dict(name="dead", address=dead)]
    h = h2_halo(servers, retries=0)
    (total, started, done, ok, failed), (c2, _, c4, c5) = h2load(h, "-n", "20", "-c", "1", "-m", "10")
    # Round robin: every other stream goes to the dead server and gets its
    # 502; the others, on the same connection, are answered.
    assert done == 20 and c2 == 10 and c5 == 10, (done, c2, c5)
    lines = h.h2_lines(20)
    assert sum('status=502' in l and 'server="dead"' in l for l in lines) == 10, lines


def test_one_reset_stream_leaves_the_others(h2_halo, backends_alive):
    # A client write timeout that never comes within the test: the reset
    # stream's exchange can only end because of the reset.
    h = h2_halo(timeouts={"client": "1h"})
    path = backends_alive[0].big_file("h2-4m.bin", 4 << 20)
    for b in backends_alive[1:]:
        b.big_file("h2-4m.bin", 4 << 20)
    c = RawH2(h.port)
    try:
        big = c.request(path)
        small = c.request("/headers")
        c.c.reset_stream(big)
        c.flush()
        assert c.read_until(c.finished(small))
        assert c.streams[small]["status"] == 200 and c.streams[small]["ended"]
        # The connection goes on.
        again = c.request("/")
        assert c.read_until(c.finished(again))
        assert c.streams[again]["status"] == 200
        assert len(c.streams[big]["body"]) < 4 << 20
    finally:
        c.close()
    # The reset stream's exchange ended when the reset came (its response
    # could not go out: no window): abandoned while waiting (499), or its
    # write waiting for window failed (the head had gone out: 200).
    lines = [l for l in h.h2_lines(3) if path in l]
    assert len(lines) == 1, lines
    assert ("status=499" in lines[0] and "client reset" in lines[0]) or (
        "status=200" in lines[0] and 'note="client error in body"' in lines[0]), lines


def test_rapid_reset(h2_halo):
    """Streams opened and reset at once, in bulk (CVE-2023-44487): halo
    runs no more of them than a client may have streams open, and the h2
    layer ends such a connection; other clients are served meanwhile."""
    h = h2_halo()
    c = RawH2(h.port)
    try:
        for _ in range(300):
            sid = c.c.get_next_available_stream_id()
            c.c.send_headers(sid, [(":method", "GET"), (":scheme", "https"), (":authority", SNI),
                                   (":path", "/rapid")], end_stream=True)
            c.c.reset_stream(sid)
        c.flush()
        c.read_until(lambda: False, timeout=10)
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        c.close()
    r = curl(h, "--http2", "-o", os.devnull, "-w", "%{http_code}", h.url("/headers"))
    assert r.stdout == "200", r.stdout + r.stderr
    lines = [l for l in h.h2_lines() if "/rapid" in l]
    assert len(lines) <= 300
    assert all("status=499" in l or "status=404" in l for l in lines), lines


def test_forbidden_fields_and_a_too_large_header_list(h2_halo):
    h = h2_halo(limits={"max_head_bytes": 4096})
    c = RawH2(h.port, validate=False)
    try:
        # RFC 9113 8.2.2: a connection-specific field makes the request
        # malformed: that stream is reset, the connection stays.
        bad = c.request("/", extra=[("connection", "keep-alive")])
        assert c.read_until(c.finished(bad))
        assert c.streams[bad]["reset"] == h2.errors.ErrorCodes.PROTOCOL_ERROR, c.streams[bad]
        te = c.request("/", extra=[("te", "gzip")])
        assert c.read_until(c.finished(te))
        assert c.streams[te]["reset"] == h2.errors.ErrorCodes.PROTOCOL_ERROR, c.streams[te]
        big = c.request("/", extra=[("x-big", "a" * 8000)])
        assert c.read_until(c.finished(big))
        st = c.streams[big]
        assert st["status"] == 431 or st["reset"] is not None, st
        ok = c.request("/headers", extra=[("te", "trailers")])
        assert c.read_until(c.finished(ok))
        assert c.streams[ok]["status"] == 200
        assert b"te=\n" in c.streams[ok]["body"], c.streams[ok]["body"]
    finally:
        c.close()


def test_a_client_that_never_reads(h2_halo, backends_alive):
    """Streams of a client that gives no window and reads nothing: halo
    holds no more than its buffers, gives up after timeouts.client with
    RST_STREAM, and other connections go on meanwhile."""
    h = h2_halo(timeouts={"client": "2s"})
    path = backends_alive[0].big_file("h2-8m.bin", 8 << 20)
    for b in backends_alive[1:]:
        b.big_file("h2-8m.bin", 8 << 20)
    before = h.rss_kib()
    c = RawH2(h.port, window=0)
    try:
        sids = [c.request(path) for _ in range(30)]
        # Meanwhile another client is served.
        r = curl(h, "--http2", "-o", os.devnull, "-w", "%{http_code}", h.url("/headers"))
        assert r.stdout == "200", r.stdout + r.stderr
        time.sleep(1)
        grown = h.rss_kib() - before
        # 30 streams of 8 MiB each: nothing near that is held.
        assert grown < 16 * 1024, grown
        # Now read: each stream got its head, no body (no window), then a reset.
        assert c.read_until(lambda: all(c.streams[s]["reset"] is not None for s in sids), timeout=60)
        for s in sids:
            assert c.streams[s]["status"] == 200 and c.streams[s]["body"] == b"", c.streams[s]
    finally:
        c.close()
    lines = [l for l in h.h2_lines(31) if path in l]
    assert len(lines) == 30, lines


def test_goaway_when_idle(h2_halo):
    h = h2_halo(timeouts={"keep_alive": "2s"})
    c = RawH2(h.port)
    try:
        sid = c.request("/")
        assert c.read_until(c.finished(sid))
        # Idle for keep_alive: a graceful GOAWAY (RFC 9113 6.8: first
        # with the highest stream id, then the last one processed), the close.
        c.read_until(lambda: False, timeout=60)
        assert c.closed
        assert [(g.error_code, g.last_stream_id) for g in c.goaways] == [(0, 2**31 - 1), (0, sid)]
    finally:
        c.close()


def test_goaway_on_reload(h2_halo):
    h = h2_halo(timeouts={"keep_alive": "1h"})
    c = RawH2(h.port)
    try:
        sid = c.request("/")
        assert c.read_until(c.finished(sid))
        # A reload retires the connection's generation: GOAWAY, long
        # before keep_alive would.
        h.cfg.write_text(h.cfg.read_text().replace('keep_alive = "1h"', 'keep_alive = "2h"'))
        h.reload()
        c.read_until(lambda: False, timeout=120)
        assert c.closed
        assert [(g.error_code, g.last_stream_id) for g in c.goaways] == [(0, 2**31 - 1), (0, sid)]
    finally:
        c.close()


# === differential probes: malformed HTTP/2 requests, halo and HAProxy ===

# (name, header list after the pseudo-headers' defaults, body). Fields are
# sent as given (python3-h2 with validation off): bytes a client library
# would refuse to send are what a hostile client sends.
BASE = [(":method", "GET"), (":scheme", "https"), (":authority", "a.example"), (":path", "/p")]


def hdrs(*extra, drop=(), first=(), method="GET"):
    base = [(k, method if k == ":method" else v) for k, v in BASE if k not in drop]
    return [*first, *base, *extra]


H2_PROBES = [
    ("plain GET", hdrs(), None),
    ("te: trailers (allowed, not forwarded)", hdrs(("te", "trailers")), None),
    ("cookies split by HPACK", hdrs(("cookie", "a=1"), ("cookie", "b=2")), None),
    ("host beside :authority", hdrs(("host", "b.example")), None),
    ("host without :authority", hdrs(("host", "b.example"), drop=(":authority",)), None),
    ("neither :authority nor host", hdrs(drop=(":authority",)), None),
    ("POST with content-length", hdrs(("content-length", "3"), method="POST"), b"abc"),
    ("POST without content-length", hdrs(method="POST"), b"abc"),
    ("connection: keep-alive", hdrs(("connection", "keep-alive")), None),
    ("keep-alive field", hdrs(("keep-alive", "timeout=5")), None),
    ("transfer-encoding: chunked", hdrs(("transfer-encoding", "chunked"), method="POST"),
     b"3\r\nabc\r\n0\r\n\r\n"),
    ("upgrade: websocket", hdrs(("upgrade", "websocket")), None),
    ("te: gzip", hdrs(("te", "gzip")), None),
    ("uppercase field name", hdrs(("X-Upper", "1")), None),
    ("LF in a value (h1 smuggling)", hdrs(("x-a", "1\r\ntransfer-encoding: chunked")), None),
    ("space in a field name", hdrs(("x a", "1")), None),
    ("no :path", hdrs(drop=(":path",)), None),
    ("empty :path", [(k, "" if k == ":path" else v) for k, v in BASE], None),
    ("unknown pseudo-header", hdrs((":foo", "1")), None),
    ("pseudo-header after a field", hdrs(first=(("x-a", "1"),)), None),
    ("two :method", hdrs((":method", "POST")), None),
    ("content-length 5, body 3", hdrs(("content-length", "5"), method="POST"), b"abc"),
    ("CONNECT", [(":method", "CONNECT"), (":authority", "a.example:443")], None),
]

# name -> (halo's answer, what its server got, HAProxy 2.6's answer class,
# whether HAProxy forwarded anything). An answer is a status, "reset" (a
# RST_STREAM: the stream is malformed, RFC 9113 8.1.1) or "goaway".
H2_EXPECT = {
    'plain GET': (200, [b'GET /p HTTP/1.1\r\nhost: a.example\r\n\r\n'], 2, True),
    'te: trailers (allowed, not forwarded)': (200, [b'GET /p HTTP/1.1\r\nhost: a.example\r\n\r\n'], 2, True),
    'cookies split by HPACK': (200, [b'GET /p HTTP/1.1\r\nhost: a.example\r\ncookie: a=1; b=2\r\n\r\n'], 2, True),
    'host beside :authority': (200, [b'GET /p HTTP/1.1\r\nhost: a.example\r\n\r\n'], 2, True),
    'host without :authority': (200, [b'GET /p HTTP/1.1\r\nhost: b.example\r\n\r\n'], 2, True),
    'neither :authority nor host': (400, [], 2, True),
    'POST with content-length': (200, [b'POST /p HTTP/1.1\r\nhost: a.example\r\nContent-Length: 3\r\n\r\nabc'], 2, True),
    'POST without content-length': (200, [b'POST /p HTTP/1.1\r\nhost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'], 2, True),
    'connection: keep-alive': ('reset', [], 'reset', False),
    'keep-alive field': ('reset', [], 'reset', False),
    'transfer-encoding: chunked': ('reset', [], 'reset', False),
    'upgrade: websocket': ('reset', [], 'reset', False),
    'te: gzip': ('reset', [], 'reset', False),
    'uppercase field name': ('goaway', [], 'reset', False),
    'LF in a value (h1 smuggling)': ('goaway', [], 'goaway', False),
    'space in a field name': ('goaway', [], 'reset', False),
    'no :path': ('reset', [], 'reset', False),
    'empty :path': ('reset', [], 'reset', False),
    'unknown pseudo-header': ('goaway', [], 'reset', False),
    'pseudo-header after a field': ('reset', [], 'reset', False),
    'two :method': ('reset', [], 'reset', False),
    'content-length 5, body 3': ('reset', [], 'reset', False),
    'CONNECT': (501, [], 2, True),
}


def h2_probe(port, backend, headers, body):
    """(answer, requests the server saw) for one probe on a new connection."""
    backend.requests.clear()
    c = RawH2(port, validate=False)
    try:
        sid = c.c.get_next_available_stream_id()
        c.c.send_headers(sid, headers, end_stream=body is None)
        c.streams[sid] = dict(status=None, body=b"", ended=False, reset=None)
        if body is not None:
            c.c.send_data(sid, body, end_stream=True)
        c.flush()
        c.read_until(c.finished(sid), timeout=15)
        st = c.streams[sid]
        if st["status"] is not None:
            answer = st["status"]
        elif st["reset"] is not None:
            answer = "reset"
        else:
            answer = "goaway"
    finally:
        c.close()
    time.sleep(0.2)  # a forwarded request's last bytes
    return answer, [r for _, r in backend.requests]


def test_h2_probes_on_halo(h2_halo, recorder):
    rb = recorder()
    h = h2_halo([dict(name="s1", address=rb.address)], forwardfor=False)
    got = {}
    for name, headers, body in H2_PROBES:
        got[name] = h2_probe(h.port, rb, headers, body)
    assert sorted(H2_EXPECT) == sorted(name for name, _, _ in H2_PROBES)
    wrong = [f"{n}: got {got[n]}, want {H2_EXPECT[n][:2]}" for n in H2_EXPECT if got[n] != tuple(H2_EXPECT[n][:2])]
    assert not wrong, "\n".join(wrong)


@pytest.mark.skipif(not os.path.exists(HAPROXY), reason="Debian's haproxy is not installed")
def test_h2_probes_on_haproxy(tmp_path, recorder):
    site = make_cert(str(tmp_path), "site", [SNI])
    rb = recorder()
    # Debian's HAProxy terminating TLS with ALPN h2, defaults as shipped otherwise.
    ha = HAProxy(rb.port, bind_options=f"ssl crt {site['pem']} alpn h2,http/1.1")
    try:
        got = {name: h2_probe(ha.port, rb, headers, body) for name, headers, body in H2_PROBES}
    finally:
        ha.stop()
    wrong = []
    for name, (_, _, want, forwarded) in H2_EXPECT.items():
        answer, seen = got[name]
        cls = answer // 100 if isinstance(answer, int) else answer
        if cls != want or bool(seen) != forwarded:
            wrong.append(f"{name}: got {answer} ({len(seen)} forwarded), want {want} ({forwarded})")
    assert not wrong, "\n".join(wrong)
