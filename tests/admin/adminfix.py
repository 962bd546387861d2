"""Helpers for the admin listener tests: real nginx backends, a halo started
with an `[admin]` table, HTTP GETs with or without basic auth.

A module of its own rather than conftest.py (whose name other test
directories share). Every process started here is killed by its pid, also
when a test fails; nothing binds outside loopback.
"""

import base64
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from halolab import wait_for  # noqa: F401  (re-exported for the admin tests)
from localfix import free_port, halo_bin, kill, nginx_conf, toml_str, wait_port  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
ARTIFACTS = ROOT / "target" / "test-artifacts"


def backend_conf(d, listen):
    return nginx_conf(d, f"""    server {{
        listen {listen};
        root {d}/www;
        location = /health {{ default_type text/plain; return 200 "ok\\n"; }}
        location = /boom {{ default_type text/plain; return 500 "boom\\n"; }}
    }}
""", connections=256)


class Nginx:
    """One nginx process (master_process off) in its own prefix. `wrap` runs
    it under a prefix command such as `ip netns exec NS`."""

    def __init__(self, name, base, port=None, wrap=()):
        self.name = name
        self.dir = Path(base) / name
        (self.dir / "www").mkdir(parents=True, exist_ok=True)
        (self.dir / "www" / "index.html").write_text(f"page from {name}\n")
        self.port = port or free_port()
        self.wrap = list(wrap)
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(
            backend_conf(self.dir, f"127.0.0.1:{self.port}")
        )
        self.proc = None

    def start(self, wait=True):
        self.proc = subprocess.Popen(
            self.wrap + [NGINX, "-p", str(self.dir), "-c", str(self.conf), "-e", str(self.dir / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if wait:
            wait_port(self.port, proc=self.proc, timeout=60)
        return self

    def stop(self):
        kill(self.proc)
        self.proc = None


def proxy_section(backends, health_interval="1s"):
    lines = [
        "[proxy.web]",
        f'bind = ["127.0.0.1:{free_port()}"]',
        'io = "epoll"',
        "workers = 1",
        "retries = 1",
        "servers = [",
    ]
    for b in backends:
        lines.append(f'  {{ name = "{b.name}", address = "127.0.0.1:{b.port}" }},')
    lines += [
        "]",
        "[proxy.web.health]",
        'type = "http"',
        'path = "/health"',
        f'interval = "{health_interval}"',
        f'fast_interval = "{health_interval}"',
        # These tests read the servers' state, they do not time the checks:
        # a loaded machine must not see a healthy nginx flap DOWN.
        'timeout = "1s"',
        "rise = 1",
        "fall = 3",
    ]
    return lines


class Halo:
    """halo run with a generated config, its own control socket and log."""

    def __init__(self, tmp, sections, admin_port=None, auth=None, wrap=()):
        self.tmp = Path(tmp)
        self.admin_port = admin_port or free_port()
        self.socket = self.tmp / "halo.sock"
        self.cfg = self.tmp / "halo.toml"
        self.log_path = self.tmp / "halo.log"
        self.wrap = list(wrap)
        lines = [
            "[global]",
            f"control_socket = {toml_str(self.socket)}",
            'log_level = "info"',
            "",
            "[admin]",
            f'bind = ["127.0.0.1:{self.admin_port}"]',
        ]
        if auth:
            lines += [
                f"basic_auth_user = {toml_str(auth[0])}",
                f"basic_auth_hash = {toml_str(auth[1])}",
            ]
        lines.append("")
        lines += sections
        self.cfg.write_text("\n".join(lines) + "\n")
        self.proc = None
        self.proxy_port = None
        for line in sections:
            if line.startswith("bind = "):
                self.proxy_port = int(line.split(":")[-1].rstrip('"]'))
                break

    def start(self, wait=True):
        self.logf = open(self.log_path, "w")
        env = dict(os.environ, NO_COLOR="1")
        env.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen(
            self.wrap + [halo_bin(), "run", "--config", str(self.cfg), "--socket", str(self.socket)],
            stdout=self.logf,
            stderr=subprocess.STDOUT,
            env=env,
        )
        if wait:
            try:
                wait_port(self.admin_port, proc=self.proc, timeout=60)
            except Exception:
                self.stop()
                raise RuntimeError("halo did not start:\n" + self.log())
        return self

    def log(self):
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self):
        kill(self.proc)
        self.proc = None
        if getattr(self, "logf", None):
            self.logf.close()

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def status_cli(self):
        r = subprocess.run(
            [halo_bin(), "status", "--json", "--socket", str(self.socket)],
            capture_output=True, text=True, timeout=30,
        )
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)


def get(url, auth=None, timeout=30):
    """(status, headers, body bytes); HTTP errors are answers, not raises."""
    req = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def metric_values(text, name):
    """{labels-string: value} of one metric's samples."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            out[key[len(name):]] = float(value)
    return out
