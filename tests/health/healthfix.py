"""Helpers for the health-check tests: locating halo, and real nginx
(localfix's Nginx and Halo, the ones every suite uses).

nginx runs as a single process (master_process off) with its own prefix in a
temporary directory, listening on 127.0.0.1 only, so tests need no root and
leave nothing behind: each instance is killed by its pid at teardown.
(A module of its own rather than conftest.py, whose name other test
directories share.)
"""
from pathlib import Path

import localfix
from localfix import NGINX, Halo, free_port, halo_bin, nginx_conf, wait_port  # noqa: F401  (re-exported)

PAGE = "<html><body>halo genhash test page\n</body></html>\n"
OTHER = "<html><body>the other virtual host\n</body></html>\n"


class Nginx(localfix.Nginx):
    """nginx serving:
    /page.html            a static file (Content-Length)
    /chunked/page.html    the same file through sub_filter (sent chunked)
    /health               200 "ok"
    /missing              404
    and, for Host: other.test, OTHER at /page.html. Started at once
    (localfix.Nginx with this config)."""

    def __init__(self, tmp: Path):
        port = free_port()
        (tmp / "html/chunked").mkdir(parents=True)
        (tmp / "other").mkdir()
        (tmp / "html/page.html").write_text(PAGE)
        (tmp / "html/chunked/page.html").write_text(PAGE)
        (tmp / "other/page.html").write_text(OTHER)
        d = str(tmp)
        super().__init__(tmp.name, tmp, nginx_conf(d, f"""    default_type text/html;
    server {{
        listen 127.0.0.1:{port} default_server;
        root {d}/html;
        location = /health {{ return 200 "ok\\n"; }}
        location /chunked/ {{ sub_filter 'never-present-in-the-page' 'x'; }}
    }}
    server {{
        listen 127.0.0.1:{port};
        server_name other.test;
        root {d}/other;
    }}
""", connections=64), port)
        self.start()
