"""Helpers for the health-check tests: locating halo, and real nginx.

nginx runs as a single process (master_process off) with its own prefix in a
temporary directory, listening on 127.0.0.1 only, so tests need no root and
leave nothing behind: each instance is killed by its pid at teardown.
(A module of its own rather than conftest.py, whose name other test
directories share.)
"""
import subprocess
from pathlib import Path

from localfix import free_port, halo_bin, nginx_conf, wait_port  # noqa: F401  (halo_bin re-exported)

NGINX = "/usr/sbin/nginx"
PAGE = "<html><body>halo genhash test page\n</body></html>\n"
OTHER = "<html><body>the other virtual host\n</body></html>\n"


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
        (tmp / "nginx.conf").write_text(nginx_conf(d, f"""    default_type text/html;
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
""", connections=64))
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.dir), "-e", str(self.dir / "error.log"),
             "-c", str(self.dir / "nginx.conf")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(self.port, proc=self.proc, timeout=60)
        except RuntimeError as e:
            log = (self.dir / "error.log").read_text() if (self.dir / "error.log").exists() else ""
            self.stop()
            raise RuntimeError(f"nginx: {e}: {log}") from None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"
