"""The admin listener through the real binary: /metrics checked by promtool
and moving with traffic, /status.json equal to `halo status --json`, the
page's headers, bad requests, basic auth with a mkpasswd hash, and [admin]
changed by a reload. Everything on loopback, real nginx backends."""

import json
import re
import shutil
import socket
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from adminfix import (
    Halo,
    Nginx,
    free_port,
    get,
    metric_values,
    proxy_section,
    wait_for,
    wait_port,
    halo_bin,
)

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


@pytest.fixture(scope="module")
def site():
    base = Path(tempfile.mkdtemp(prefix="halo-admin-"))
    base.chmod(0o755)
    backends = [Nginx(f"web{i}", base) for i in (1, 2)]
    halo = None
    try:
        for b in backends:
            b.start()
        (base / "halo").mkdir()
        halo = Halo(base / "halo", proxy_section(backends)).start()
        wait_port(halo.proxy_port, proc=halo.proc)
        yield halo, backends
    finally:
        if halo:
            halo.stop()
        for b in backends:
            b.stop()
        shutil.rmtree(base, ignore_errors=True)


def promtool_check(text):
    r = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    return r.returncode, r.stdout + r.stderr


def proxy_get(halo, path):
    url = f"http://127.0.0.1:{halo.proxy_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_metrics_pass_promtool_and_count_requests(site):
    halo, _ = site
    wait_for(lambda: all(s["healthy"] for s in halo.status_cli()["proxy"][0]["servers"]), 60, "both servers up")
    status, headers, body = get(halo.url("/metrics"))
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    before = body.decode()
    rc, out = promtool_check(before)
    assert rc == 0, out
    for name in (
        "process_start_time_seconds",
        "halo_service_up",
        "halo_server_up",
        "halo_server_requests_total",
        "halo_server_request_duration_seconds_bucket",
        "halo_server_active_requests",
        "halo_server_retries_total",
    ):
        assert re.search(rf"^{name}[{{ ]", before, re.M), f"{name} missing"
    up = metric_values(before, "halo_server_up")
    assert up == {'{service="web",server="web1"}': 1.0, '{service="web",server="web2"}': 1.0}

    n = 20
    for _ in range(n):
        assert proxy_get(halo, "/") == 200
    assert proxy_get(halo, "/nothing-here") == 404
    assert proxy_get(halo, "/boom") == 500

    def total(text, name, code=None):
        vals = metric_values(text, name)
        return sum(v for k, v in vals.items() if code is None or f'code="{code}"' in k)

    # A request is counted when halo has finished with it, just after the
    # client has its last byte: scrape until all n + 2 are in (or time out),
    # then check each counter exactly.
    def settled():
        text = get(halo.url("/metrics"))[2].decode()
        done = total(text, "halo_service_request_duration_seconds_count") - total(
            before, "halo_service_request_duration_seconds_count"
        )
        return text if done >= n + 2 and total(text, "halo_server_active_requests") == 0 else None

    after = wait_for(settled, 60, "all requests counted in /metrics")
    rc, out = promtool_check(after)
    assert rc == 0, out

    assert total(after, "halo_service_requests_total", "2xx") - total(before, "halo_service_requests_total", "2xx") == n
    assert total(after, "halo_server_requests_total", "2xx") - total(before, "halo_server_requests_total", "2xx") == n
    assert total(after, "halo_server_requests_total", "4xx") - total(before, "halo_server_requests_total", "4xx") == 1
    assert total(after, "halo_server_requests_total", "5xx") - total(before, "halo_server_requests_total", "5xx") == 1
    # Round robin over two servers: each got half of the 2xx.
    per = {k: v for k, v in metric_values(after, "halo_server_requests_total").items() if 'code="2xx"' in k}
    assert len(per) == 2 and all(v >= n // 2 for v in per.values()), per
    cnt = total(after, "halo_service_request_duration_seconds_count") - total(
        before, "halo_service_request_duration_seconds_count"
    )
    assert cnt == n + 2
    assert total(after, "halo_server_sent_bytes_total") > total(before, "halo_server_sent_bytes_total")
    assert total(after, "halo_service_response_bytes_total") > total(before, "halo_service_response_bytes_total")
    # No request is in flight once all have been answered.
    assert total(after, "halo_server_active_requests") == 0


def test_status_json_matches_halo_status(site):
    halo, _ = site

    def counted():
        servers = halo.status_cli()["proxy"][0]["servers"]
        return sum(s["requests"] for s in servers), all(s["active"] == 0 for s in servers)

    start = counted()[0]
    for _ in range(3):
        assert proxy_get(halo, "/") == 200
    # Counted once halo is done with each, just after the client has it:
    # wait for all three so that the two reads below see the same numbers.
    wait_for(lambda: counted() == (start + 3, True), 60, "three requests counted, none active")
    status, headers, body = get(halo.url("/status.json"))
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    web = json.loads(body)
    cli = halo.status_cli()

    # Times and rates move between the two reads; everything else is equal.
    def stable(s):
        s = json.loads(json.dumps(s))
        s.pop("uptime_secs")
        for svc in s["proxy"]:
            for v in svc["servers"]:
                for k in ("state_secs", "last_check_secs_ago", "last_result", "rate"):
                    v.pop(k)
        return s

    assert stable(web) == stable(cli)
    servers = web["proxy"][0]["servers"]
    assert [s["name"] for s in servers] == ["web1", "web2"]
    assert sum(s["requests"] for s in servers) >= 3
    assert all(s["active"] == 0 for s in servers)

    # The table shows the traffic columns too.
    r = subprocess.run([halo_bin(), "status", "--socket", str(halo.socket)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "req/s" in r.stdout and "requests" in r.stdout


def test_page_is_self_contained(site):
    halo, _ = site
    status, headers, body = get(halo.url("/"))
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    page = body.decode()
    assert "status.json" in page
    # No external assets: nothing is loaded from anywhere.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "url(" not in page and "@import" not in page
    # HEAD: headers only.
    req = urllib.request.Request(halo.url("/"), method="HEAD")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200 and r.read() == b""


def raw(halo, data, read=True):
    with socket.create_connection(("127.0.0.1", halo.admin_port), timeout=30) as s:
        s.sendall(data)
        if not read:
            return b""
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out


def test_bad_requests_get_clear_answers(site):
    halo, _ = site
    assert get(halo.url("/nope"))[0] == 404
    assert raw(halo, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    assert raw(halo, b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    big = b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    assert raw(halo, big).startswith(b"HTTP/1.1 431 ")
    # The listener is still there after all that.
    assert get(halo.url("/metrics"))[0] == 200


@pytest.fixture(scope="module")
def authed():
    base = Path(tempfile.mkdtemp(prefix="halo-admin-auth-"))
    base.chmod(0o755)
    backend = Nginx("web1", base)
    halo = None
    try:
        backend.start()
        h = subprocess.run(["mkpasswd", "-m", "sha-512", "s3cret pass"], capture_output=True, text=True, check=True)
        (base / "halo").mkdir()
        halo = Halo(base / "halo", proxy_section([backend]), auth=("ops", h.stdout.strip())).start()
        yield halo
    finally:
        if halo:
            halo.stop()
        backend.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("path", ["/", "/metrics", "/status.json", "/nope"])
def test_basic_auth(authed, path):
    halo = authed
    # halo logs a refusal before it answers; lines from earlier tests on
    # this halo are counted out.
    refused = halo.log().count("refused credentials")
    status, headers, body = get(halo.url(path))
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic realm=")
    assert b"halo" not in body or b"401" in body
    assert get(halo.url(path), auth=("ops", "wrong"))[0] == 401
    assert get(halo.url(path), auth=("root", "s3cret pass"))[0] == 401
    assert get(halo.url(path), auth=("ops", "s3cret pass"))[0] == (404 if path == "/nope" else 200)
    # Remembered credentials still pass; a wrong password after them still fails.
    assert get(halo.url(path), auth=("ops", "s3cret pass"))[0] == (404 if path == "/nope" else 200)
    assert get(halo.url(path), auth=("ops", "s3cret pas"))[0] == 401
    # One line per wrong credential (three), none for the request without any.
    assert halo.log().count("refused credentials") == refused + 3, halo.log()


def test_reload_moves_the_listener_and_rejects_a_bad_hash(tmp_path):
    base = tmp_path
    base.chmod(0o755)
    backend = Nginx("web1", base)
    halo = None
    try:
        backend.start()
        (base / "halo").mkdir()
        halo = Halo(base / "halo", proxy_section([backend])).start()
        old = halo.admin_port
        new = free_port()
        text = halo.cfg.read_text()
        halo.cfg.write_text(text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}", 1))
        reload = [halo_bin(), "reload", "--socket", str(halo.socket)]
        r = subprocess.run(reload, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "admin: listening on" in r.stdout
        wait_port(new, proc=halo.proc, timeout=60)
        assert get(f"http://127.0.0.1:{new}/metrics")[0] == 200

        # The old listener's task is aborted by the reload and closes its
        # socket when the runtime next runs it, which can be just after
        # the reply: wait for the refusal (it must come).
        def old_refused():
            try:
                socket.create_connection(("127.0.0.1", old), timeout=5).close()
            except OSError:
                return True
            return False

        wait_for(old_refused, 60, f"the old admin port {old} refusing connections")

        # An invalid hash is a located error and changes nothing.
        halo.cfg.write_text(
            halo.cfg.read_text().replace("[admin]\n", '[admin]\nbasic_auth_user = "ops"\nbasic_auth_hash = "$2b$05$x"\n')
        )
        r = subprocess.run(reload, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1
        assert re.search(r"halo\.toml:\d+:\d+: `basic_auth_hash`: this hash type is not supported", r.stderr), r.stderr
        assert get(f"http://127.0.0.1:{new}/metrics")[0] == 200
    finally:
        if halo:
            halo.stop()
        backend.stop()
