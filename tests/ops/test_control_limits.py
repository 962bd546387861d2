"""The control socket is bounded (issue 12): a request line has a length
limit, and the number of control connections is capped. Before, a client
that sent 256 MiB without a newline grew halo by 260 MiB, and any number of
connections were served.

halo runs proxy-only on loopback (no root needed); the proxy's one server is
never contacted. Everything is bounded in bytes and time."""

import json
import socket
import subprocess
import tempfile
from pathlib import Path

from halolab import halo_bin, wait_for
from localfix import free_port, kill

T = 30
# Both from daemon/src/control/server.rs.
MAX_LINE = 64 * 1024
MAX_CONNECTIONS = 16


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def start(tmp):
    sock = tmp / "halo.sock"
    port = free_port()
    (tmp / "halo.toml").write_text(f"""
[global]
control_socket = "{sock}"
log_level = "warn"

[proxy.web]
bind = ["127.0.0.1:{port}"]
workers = 1
io = "epoll"
servers = [{{ name = "a", address = "127.0.0.1:9" }}]
""")
    log = open(tmp / "halo.log", "w")
    halo = subprocess.Popen([halo_bin(), "run", "--config", str(tmp / "halo.toml")], stdout=log,
                            stderr=subprocess.STDOUT)
    log.close()

    def up():
        assert halo.poll() is None, (tmp / "halo.log").read_text()
        return subprocess.run([halo_bin(), "status", "--json", "--socket", str(sock)], capture_output=True,
                              timeout=T).returncode == 0
    wait_for(up, T, "halo to answer on its control socket")
    return halo, str(sock)


def connect(sock):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(T)
    s.connect(sock)
    return s


def ask_status(s):
    """Send a status request and read the answer. A refused connection may
    be closed before the request is sent; its answer is still there."""
    try:
        s.sendall(b'{"cmd":"status"}\n')
    except (BrokenPipeError, ConnectionResetError):
        pass
    return json.loads(answer(s))


def answer(s):
    """One response line (or what came before the end)."""
    buf = b""
    while not buf.endswith(b"\n"):
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            break
        if not d:
            break
        buf += d
    return buf.decode()


def test_a_line_without_newline_is_cut_off_and_costs_no_memory():
    with tempfile.TemporaryDirectory(prefix="halo-ctl-") as d:
        halo, sock = start(Path(d))
        try:
            before = rss_kib(halo.pid)
            s = connect(sock)
            chunk = b"x" * (1 << 20)
            sent = 0
            closed = False
            # Up to 64 MiB; halo must end the connection long before.
            try:
                while sent < 64 << 20:
                    s.sendall(chunk)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            assert closed, f"halo took {sent >> 20} MiB of one request line"
            # A Unix socket keeps what halo wrote before it closed: the reason.
            r = json.loads(answer(s))
            s.close()
            assert not r["ok"] and f"longer than {MAX_LINE} bytes" in r["message"], r
            grown = rss_kib(halo.pid) - before
            assert grown < 8 * 1024, f"halo grew by {grown} KiB"
            # Still serving.
            s = connect(sock)
            s.sendall(b'{"cmd":"status"}\n')
            assert json.loads(answer(s))["ok"]
            s.close()
        finally:
            kill(halo)


def test_control_connections_are_capped():
    with tempfile.TemporaryDirectory(prefix="halo-ctl-") as d:
        halo, sock = start(Path(d))
        held = []
        try:
            # Connections that stay open; each is served (a status request
            # on it is answered) before the next opens. A connection just
            # closed (the start-up check's) holds its slot until halo has
            # seen it end: then one is refused, and tried again.
            def hold():
                s = connect(sock)
                if ask_status(s)["ok"]:
                    held.append(s)
                    return True
                s.close()
                return False
            for _ in range(MAX_CONNECTIONS):
                wait_for(hold, T, "a control connection to be served")
            extra = connect(sock)
            r = ask_status(extra)
            extra.close()
            assert not r["ok"] and "too many control connections" in r["message"], r
            # One closes: a slot is free again.
            held.pop().close()

            def served():
                s = connect(sock)
                try:
                    return ask_status(s)["ok"]
                finally:
                    s.close()
            wait_for(served, T, "a control connection to be served again")
        finally:
            for s in held:
                s.close()
            kill(halo)
