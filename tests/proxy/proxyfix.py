"""Fixtures for the proxy tests: three real nginx backends on loopback and a
halo started with a generated config.

Everything listens on 127.0.0.1 (no namespaces needed). Each nginx is its own
non-root-prefix instance in a temp dir; every process started here is killed
by pid at teardown, even when the test fails.
"""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from localfix import free_port, halo_bin, kill, nginx_conf, toml_str, wait_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

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


class Nginx:
    def __init__(self, name, base):
        self.name = name
        self.dir = os.path.join(base, name)
        os.makedirs(os.path.join(self.dir, "www"), exist_ok=True)
        self.port = free_port()
        self.proc = None
        with open(os.path.join(self.dir, "www", "index.html"), "w") as f:
            f.write(f"page from {name}\n")
        # A 1 KiB page for the benchmark-like tests.
        with open(os.path.join(self.dir, "www", "1k.html"), "w") as f:
            f.write((name + " ").ljust(1023, "x") + "\n")
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(backend_conf(self.dir, self.port, name))

    def big_file(self, name, size):
        """A sparse file served as /NAME."""
        path = os.path.join(self.dir, "www", name)
        with open(path, "wb") as f:
            f.truncate(size)
        return "/" + name

    def start(self):
        self.proc = subprocess.Popen(
            [NGINX, "-p", self.dir, "-c", self.conf, "-e", os.path.join(self.dir, "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, proc=self.proc, timeout=60.0)

    def stop(self):
        # SIGTERM: nginx master stops its worker, waits for it and exits.
        # (A SIGKILLed master would leave its worker listening, so the
        # grace is generous.)
        kill(self.proc, grace=30)
        self.proc = None
        # Wait for the port to be free so "down" really means refused.
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
            except OSError:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: 127.0.0.1:{self.port} still accepts after nginx exited")
            time.sleep(0.05)


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


class Halo:
    def __init__(self, tmp, io, servers, **opts):
        self.port = free_port()
        self.tmp = tmp
        self.io = io
        self.log_path = os.path.join(tmp, "halo.log")
        self.cfg = os.path.join(tmp, "halo.toml")
        lines = [
            "[global]",
            f"control_socket = {toml_str(os.path.join(tmp, 'halo.sock'))}",
            'log_level = "info"',
            "",
            "[proxy.web]",
            f'bind = ["127.0.0.1:{self.port}"]',
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
        with open(self.cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None

    def check(self):
        return subprocess.run([halo_bin(), "check", "-c", self.cfg], capture_output=True, text=True)

    def start(self):
        self.logf = open(self.log_path, "w")
        env = dict(os.environ, NO_COLOR="1")
        self.proc = subprocess.Popen(
            [halo_bin(), "run", "-c", self.cfg], stdout=self.logf, stderr=subprocess.STDOUT, env=env
        )
        try:
            wait_port(self.port, proc=self.proc, timeout=60.0)
        except Exception:
            self.stop()
            raise RuntimeError("halo did not start:\n" + self.log())
        return self

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def access_lines(self):
        return [l for l in self.log().splitlines() if " Tt=" in l and " service=" in l]

    def rss_kib(self, field="VmRSS"):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(re.findall(r"\d+", line)[0])
        raise KeyError(field)

    def stop(self):
        kill(self.proc)
        self.proc = None
        if getattr(self, "logf", None):
            self.logf.close()


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
