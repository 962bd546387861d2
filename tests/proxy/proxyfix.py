"""Fixtures for the proxy tests: three real nginx backends on loopback and a
halo started with a generated config.

Everything listens on 127.0.0.1 (no namespaces needed). Each nginx is its own
non-root-prefix instance in a temp dir; every process started here is killed
by pid at teardown, even when the test fails.
"""

import itertools
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest

import localfix
from localfix import NGINX, free_port, halo_bin, kill, nginx_conf, toml_str, wait_port  # noqa: F401  (re-exported)


def backend_conf(d, port, name):
    return nginx_conf(d, f"""    keepalive_timeout 75s;
    keepalive_requests 100000;
    client_max_body_size 0;
    server {{
        listen 127.0.0.1:{port} reuseport;
        root {d}/www;
        add_header X-Backend {name} always;
        add_header X-Conn $connection always;
        add_header X-Conn-Requests $connection_requests always;
        location = /headers {{
            default_type text/plain;
            return 200 "xff=$http_x_forwarded_for\\nfwd=$http_forwarded\\nproto=$http_x_forwarded_proto\\nhost=$http_host\\nconn=$http_connection\\nte=$http_te\\nsecret=$http_x_secret\\n";
        }}
        location = /health {{
            default_type text/plain;
            return 200 "ok\\n";
        }}
        location = /sink {{
            # Reads and discards the whole request body, then answers.
            default_type text/plain;
            return 200 "len=$content_length te=$http_transfer_encoding\\n";
        }}
    }}
""", connections=1024, processes="worker_processes 1;")


class Nginx(localfix.Nginx):
    """A backend of the proxy tests (localfix.Nginx with backend_conf):
    pages /, /1k.html, /headers, /health, /sink, and big_file()."""

    def __init__(self, name, base):
        d = os.path.join(base, name)
        os.makedirs(os.path.join(d, "www"), exist_ok=True)
        port = free_port()
        with open(os.path.join(d, "www", "index.html"), "w") as f:
            f.write(f"page from {name}\n")
        # A 1 KiB page for the benchmark-like tests.
        with open(os.path.join(d, "www", "1k.html"), "w") as f:
            f.write((name + " ").ljust(1023, "x") + "\n")
        super().__init__(name, d, backend_conf(d, port, name), port)

    def big_file(self, name, size):
        """A sparse file served as /NAME."""
        path = os.path.join(self.dir, "www", name)
        with open(path, "wb") as f:
            f.truncate(size)
        return "/" + name


@pytest.fixture(scope="session")
def backends():
    base = tempfile.mkdtemp(prefix="halo-nginx-")
    # nginx workers run as an unprivileged user: they must read the pages.
    os.chmod(base, 0o755)
    ns = [Nginx(f"web{i}", base) for i in (1, 2, 3)]
    try:
        for n in ns:
            n.start()
        yield ns
    finally:
        for n in ns:
            n.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def backends_alive(backends):
    """Backends, restarted if an earlier test stopped one."""
    for n in backends:
        if n.proc is None or n.proc.poll() is not None:
            n.start()
    return backends


class Halo(localfix.Halo):
    """halo with one [proxy.web] on a free loopback port (localfix.Halo with
    the config written from `servers` and `opts`)."""

    def __init__(self, tmp, io, servers, **opts):
        port = free_port()
        self.io = io
        lines = [
            "[global]",
            f"control_socket = {toml_str(os.path.join(tmp, 'halo.sock'))}",
            'log_level = "info"',
            "",
            "[proxy.web]",
            f'bind = ["127.0.0.1:{port}"]',
            f'io = "{io}"',
            f"workers = {opts.pop('workers', 1)}",
            f"balance = \"{opts.pop('balance', 'roundrobin')}\"",
        ]
        timeouts = opts.pop("timeouts", {})
        limits = opts.pop("limits", {})
        health = opts.pop("health", None)
        for k, v in opts.items():
            if isinstance(v, bool):
                lines.append(f"{k} = {'true' if v else 'false'}")
            elif isinstance(v, (int, float)):
                lines.append(f"{k} = {v}")
            elif isinstance(v, list):
                lines.append(f"{k} = [{', '.join(toml_str(x) for x in v)}]")
            else:
                lines.append(f"{k} = {toml_str(v)}")
        lines.append("servers = [")
        for s in servers:
            extra = "".join(f", {k} = {v}" for k, v in s.items() if k not in ("name", "address"))
            lines.append(f'  {{ name = "{s["name"]}", address = "{s["address"]}"{extra} }},')
        lines.append("]")
        if timeouts:
            lines.append("[proxy.web.timeouts]")
            lines += [f'{k} = "{v}"' for k, v in timeouts.items()]
        if limits:
            lines.append("[proxy.web.limits]")
            lines += [f"{k} = {v}" for k, v in limits.items()]
        if health:
            lines.append("[proxy.web.health]")
            for k, v in health.items():
                lines.append(f"{k} = {toml_str(v) if isinstance(v, str) else v}")
        super().__init__(tmp, "\n".join(lines) + "\n", port=port)

    def access_lines(self):
        return [l for l in self.log().splitlines() if " Tt=" in l and " service=" in l]

    def rss_kib(self, field="VmRSS"):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(re.findall(r"\d+", line)[0])
        raise KeyError(field)


@pytest.fixture(params=["uring", "epoll"])
def io(request):
    return request.param


@pytest.fixture
def make_halo(io, tmp_path):
    started = []

    def make(servers, **opts):
        h = Halo(str(tmp_path), io, servers, **opts)
        started.append(h)
        return h.start()

    yield make
    for h in started:
        h.stop()


def servers_of(backends, **extra):
    return [dict(name=b.name, address=f"127.0.0.1:{b.port}", **extra) for b in backends]


# === a raw backend that records exact bytes ===


def read_message(sock, buf=b"", head_only=False):
    """One HTTP/1.1 request from `sock` with what was already read (`buf`):
    (raw bytes of the whole request, leftover bytes). Framing by
    Content-Length or chunked; raises EOFError at a clean end of stream
    before any byte of a request."""

    def more():
        b = sock.recv(65536)
        if not b:
            raise EOFError(buf)
        return b

    while b"\r\n\r\n" not in buf:
        buf += more()
    end = buf.index(b"\r\n\r\n") + 4
    head = buf[:end].decode("latin-1").lower()
    if head_only:
        return buf[:end], buf[end:]
    m = re.search(r"\r\ncontent-length: *(\d+)\r\n", head)
    if "\r\ntransfer-encoding:" in head:
        i = end
        while True:
            while b"\r\n" not in buf[i:]:
                buf += more()
            line_end = buf.index(b"\r\n", i)
            size = int(buf[i:line_end].split(b";")[0], 16)
            i = line_end + 2
            if size == 0:
                # Trailers until an empty line.
                while True:
                    while b"\r\n" not in buf[i:]:
                        buf += more()
                    line_end = buf.index(b"\r\n", i)
                    empty = line_end == i
                    i = line_end + 2
                    if empty:
                        return buf[:i], buf[i:]
            while len(buf) < i + size + 2:
                buf += more()
            i += size + 2
    n = int(m.group(1)) if m else 0
    while len(buf) < end + n:
        buf += more()
    return buf[: end + n], buf[end + n :]


class RecordingBackend:
    """A scripted HTTP/1.1 server on loopback for what nginx cannot be made
    to do (misbehave on cue), and the probe suite's recorder: every request
    it receives is kept byte for byte in `requests` (with the index of the
    connection it came on), so a test asserts what reached the server, not
    only what the client saw.

    `answer(backend, conn_index, request_index_on_conn, request_bytes,
    sock)` writes the response itself and returns False to close the
    connection; the default answers `200 OK` with body `ok`. With
    `early=True` it answers as soon as a request's head is in (the body
    still on its way, as a server that refuses an upload does) and then
    reads the body; `requests` holds the head until the body is complete."""

    OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def __init__(self, answer=None, early=False):
        self.early = early
        self.answer = answer or (lambda b, c, i, req, s: s.sendall(self.OK) or True)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.requests = []  # (connection index, raw request bytes)
        self.conns = 0
        self.lock = threading.Lock()
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                idx = self.conns
                self.conns += 1
            threading.Thread(target=self.serve, args=(c, idx), daemon=True).start()

    def serve(self, c, idx):
        c.settimeout(30)
        buf = b""
        try:
            for i in itertools.count():
                if self.early:
                    head, buf = read_message(c, buf, head_only=True)
                    with self.lock:
                        k = len(self.requests)
                        self.requests.append((idx, head))
                    if not self.answer(self, idx, i, head, c):
                        break
                    req, buf = read_message(c, head + buf)
                    with self.lock:
                        self.requests[k] = (idx, req)
                    continue
                req, buf = read_message(c, buf)
                with self.lock:
                    self.requests.append((idx, req))
                if not self.answer(self, idx, i, req, c):
                    break
        except (OSError, EOFError, ValueError):
            pass
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.t.join(2)
        self.sock.close()


@pytest.fixture
def recorder():
    """Make RecordingBackends that are closed after the test."""
    made = []

    def make(answer=None, early=False):
        b = RecordingBackend(answer, early)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()
