"""Helpers for the admin listener tests: real nginx backends, a halo started
with an `[admin]` table, HTTP GETs with or without basic auth.

A module of its own rather than conftest.py (whose name other test
directories share). Every process started here is killed by its pid, also
when a test fails; nothing binds outside loopback.
"""

import base64
import urllib.error
import urllib.request
from pathlib import Path

from halolab import wait_for  # noqa: F401  (re-exported for the admin tests)
import localfix
from localfix import NGINX, free_port, halo_bin, kill, nginx_conf, toml_str, wait_port  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "target" / "test-artifacts"


def backend_conf(d, listen):
    return nginx_conf(d, f"""    server {{
        listen {listen};
        root {d}/www;
        location = /health {{ default_type text/plain; return 200 "ok\\n"; }}
        location = /boom {{ default_type text/plain; return 500 "boom\\n"; }}
    }}
""", connections=256)


class Nginx(localfix.Nginx):
    """A backend of the admin tests (localfix.Nginx with backend_conf):
    /, /health and /boom (500)."""

    def __init__(self, name, base, port=None, wrap=()):
        d = Path(base) / name
        (d / "www").mkdir(parents=True, exist_ok=True)
        (d / "www" / "index.html").write_text(f"page from {name}\n")
        port = port or free_port()
        super().__init__(name, d, backend_conf(d, f"127.0.0.1:{port}"), port, wrap=wrap)


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


class Halo(localfix.Halo):
    """halo with an [admin] listener on a free loopback port, and
    `sections` (lines) after it; start() waits for the admin port."""

    def __init__(self, tmp, sections, admin_port=None, auth=None, wrap=()):
        self.admin_port = admin_port or free_port()
        socket = Path(tmp) / "halo.sock"
        lines = [
            "[global]",
            f"control_socket = {toml_str(socket)}",
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
        super().__init__(tmp, "\n".join(lines) + "\n", port=self.admin_port, wrap=wrap)
        self.proxy_port = None
        for line in sections:
            if line.startswith("bind = "):
                self.proxy_port = int(line.split(":")[-1].rstrip('"]'))
                break

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.admin_port}{path}"


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
