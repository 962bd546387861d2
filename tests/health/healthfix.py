"""Helpers for the health-check tests: locating halo, and real nginx.

nginx runs as a single process (master_process off) with its own prefix in a
temporary directory, listening on 127.0.0.1 only, so tests need no root and
leave nothing behind: each instance is killed by its pid at teardown.
(A module of its own rather than conftest.py, whose name other test
directories share.)
"""
import os
import socket
import subprocess
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
NGINX = "/usr/sbin/nginx"
PAGE = "<html><body>halo genhash test page\n</body></html>\n"
OTHER = "<html><body>the other virtual host\n</body></html>\n"


def halo_bin():
    env = os.environ.get("HALO_BIN")
    if env:
        return env
    for p in (ROOT / "target/release/halo", ROOT / "target/debug/halo"):
        if p.exists():
            return str(p)
    subprocess.run(["cargo", "build", "-q", "-p", "halo"], cwd=ROOT, check=True, timeout=1800)
    return str(ROOT / "target/debug/halo")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """nginx serving:
    /page.html            a static file (Content-Length)
    /chunked/page.html    the same file through sub_filter (sent chunked)
    /health               200 "ok"
    /missing              404
    and, for Host: other.test, OTHER at /page.html.
    """

    def __init__(self, tmp: Path):
        self.dir = tmp
        self.port = free_port()
        (tmp / "html/chunked").mkdir(parents=True)
        (tmp / "other").mkdir()
        (tmp / "html/page.html").write_text(PAGE)
        (tmp / "html/chunked/page.html").write_text(PAGE)
        (tmp / "other/page.html").write_text(OTHER)
        d = str(tmp)
        (tmp / "nginx.conf").write_text(f"""
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp_body;
    proxy_temp_path {d}/tmp_proxy;
    fastcgi_temp_path {d}/tmp_fastcgi;
    uwsgi_temp_path {d}/tmp_uwsgi;
    scgi_temp_path {d}/tmp_scgi;
    default_type text/html;
    server {{
        listen 127.0.0.1:{self.port} default_server;
        root {d}/html;
        location = /health {{ return 200 "ok\\n"; }}
        location /chunked/ {{ sub_filter 'never-present-in-the-page' 'x'; }}
    }}
    server {{
        listen 127.0.0.1:{self.port};
        server_name other.test;
        root {d}/other;
    }}
}}
""")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.dir), "-e", str(self.dir / "error.log"),
             "-c", str(self.dir / "nginx.conf")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    self.proc = None
                    log = (self.dir / "error.log").read_text() if (self.dir / "error.log").exists() else ""
                    raise RuntimeError(f"nginx exited with {self.proc.returncode}: {log}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("nginx did not start listening")
                time.sleep(0.02)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"
