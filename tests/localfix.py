"""What the loopback tests (proxy, health, admin, ops) share: the halo
binary, free ports, waiting for a listener, stopping a process, TOML
strings, the part of an nginx.conf every test backend has (a foreground
nginx whose pid, logs and temp files all live in the test's own directory),
and the one `Nginx` and one `Halo` process fixture every suite builds on
(proxyfix, adminfix and healthfix only write their configs).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def halo_bin():
    """$HALO_BIN, else the built binary (release first), else a debug build."""
    b = os.environ.get("HALO_BIN")
    if b:
        return b
    for p in ("target/release/halo", "target/debug/halo"):
        full = os.path.join(ROOT, p)
        if os.path.exists(full):
            return full
    subprocess.run(["cargo", "build", "-q", "-p", "halo"], cwd=ROOT, check=True, timeout=1800)
    return os.path.join(ROOT, "target/debug/halo")


def free_port():
    """A loopback port for a server the test starts next, kept from
    everybody else until then.

    A port that is merely free now can be taken before the server binds it:
    by another test's free_port (bind to port 0) or by an outgoing
    connection's source port, and the server then fails to start or, with
    SO_REUSEPORT (halo's and the nginx backends' listeners), silently shares
    the port with a stranger. So the port is left with a TIME_WAIT
    connection on it (the accepting side closes first): for a minute the
    kernel gives it to no bind(0) and no connect(), and a socket without
    SO_REUSEADDR cannot bind it, while halo and nginx, which set
    SO_REUSEADDR on their listeners, can."""
    with socket.socket() as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as cli:
            conn, _ = srv.accept()
            # The accepted end closes first, so it is the one in TIME_WAIT.
            conn.close()
            cli.recv(1)
    return port


def wait_port(port, proc=None, timeout=15.0, host="127.0.0.1"):
    """Until something accepts on host:port; an error if `proc` exits first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {host}:{port} after {timeout}s")


def kill(proc, sig=signal.SIGTERM, grace=10):
    """Stop a process we started, by its pid: `sig`, then SIGKILL if it is
    still there after `grace` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def toml_str(s):
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(str(s))


def nginx_conf(d, http, connections, processes="master_process off;"):
    """An nginx.conf in the foreground with everything under directory `d`;
    `http` is the rest of the http block (the servers and their settings).
    Braces in `http` are literal."""
    return f"""
daemon off;
{processes}
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{http}}}
"""


def wait_refused(port, timeout=30.0, host="127.0.0.1"):
    """Until host:port refuses connections (a stopped server is gone)."""
    end = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                pass
        except OSError:
            return
        if time.monotonic() > end:
            raise RuntimeError(f"{host}:{port} still accepts {timeout}s after its server exited")
        time.sleep(0.05)


def _tail(path, n=20):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class Nginx:
    """One real nginx: its own prefix directory `dir` (nginx.conf, pid, logs,
    temp files, pages), the config text `conf` (see nginx_conf), listening
    on 127.0.0.1:`port`. `wrap` runs it under a prefix command such as
    `ip netns exec NS`. Started and stopped by its pid, one way for every
    suite (see stop)."""

    def __init__(self, name, dir, conf, port, wrap=()):
        self.name = name
        self.dir = dir
        self.port = port
        self.wrap = list(wrap)
        self.conf = Path(dir) / "nginx.conf"
        self.conf.write_text(conf)
        self.proc = None

    def start(self, wait=True):
        d = Path(self.dir)
        self.proc = subprocess.Popen(
            self.wrap + [NGINX, "-p", str(d), "-c", str(self.conf), "-e", str(d / "error.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        if wait:
            try:
                wait_port(self.port, proc=self.proc, timeout=60.0)
            except RuntimeError as e:
                self.stop()
                raise RuntimeError(f"nginx {self.name}: {e}:\n{_tail(d / 'error.log')}") from None
        return self

    def stop(self):
        """SIGTERM, SIGKILL after 30 s (a master SIGKILLed at once would leave
        its worker listening), then wait until the port refuses, so a
        stopped backend means refused connections. A wrapped nginx listens
        in another namespace's loopback: no wait there."""
        kill(self.proc, grace=30)
        self.proc = None
        if not self.wrap:
            wait_refused(self.port)

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"


class Halo:
    """`halo run` on the config text `text`, written to DIR/halo.toml, with
    its control socket DIR/halo.sock and its log DIR/halo.log. start()
    waits until 127.0.0.1:`port` (a listener of the config) accepts.
    `wrap` as for Nginx. Started and stopped by its pid."""

    def __init__(self, tmp, text, port=None, wrap=()):
        self.tmp = tmp
        d = Path(tmp)
        self.socket = d / "halo.sock"
        self.cfg = d / "halo.toml"
        self.log_path = d / "halo.log"
        self.port = port
        self.wrap = list(wrap)
        self.cfg.write_text(text)
        self.proc = None
        self.logf = None

    def check(self):
        return subprocess.run([halo_bin(), "check", "-c", str(self.cfg)], capture_output=True, text=True)

    def start(self, wait=True):
        self.logf = open(self.log_path, "w")
        env = dict(os.environ, NO_COLOR="1")
        env.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen(
            self.wrap + [halo_bin(), "run", "--config", str(self.cfg), "--socket", str(self.socket)],
            stdin=subprocess.DEVNULL, stdout=self.logf, stderr=subprocess.STDOUT, env=env,
        )
        if wait and self.port:
            try:
                wait_port(self.port, proc=self.proc, timeout=60.0)
            except Exception:
                self.stop()
                raise RuntimeError(f"halo is not listening on {self.port}:\n" + self.log()) from None
        return self

    def log(self):
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self):
        kill(self.proc)
        self.proc = None
        if self.logf:
            self.logf.close()
            self.logf = None

    def status_cli(self):
        r = subprocess.run([halo_bin(), "status", "--json", "--socket", str(self.socket)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)
