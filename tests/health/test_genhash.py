"""`halo genhash URL` against real nginx: the digest it prints is the one
md5sum / sha256sum compute over the served file, whatever the framing, and
bad input gets one clear error line and exit status 1."""

import hashlib
import socket
import subprocess

from healthfix import OTHER, PAGE


def genhash(halo, *args, timeout=30):
    return subprocess.run([halo, "genhash", *args], capture_output=True, text=True,
                          timeout=timeout)


def fields(stdout):
    out = {}
    for line in stdout.splitlines():
        if ": " in line and "=" not in line:
            k, v = line.split(": ", 1)
            out[k] = v
    return out


def tool_digest(tool, path):
    r = subprocess.run([tool, str(path)], capture_output=True, text=True, check=True)
    return r.stdout.split()[0]


def raw_head(port, path, host="test"):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n\r\n", 1)[0].decode()


def test_md5_of_a_static_page_matches_md5sum(halo, nginx):
    assert "Content-Length:" in raw_head(nginx.port, "/page.html")
    r = genhash(halo, nginx.url("/page.html"))
    assert r.returncode == 0, r.stderr
    f = fields(r.stdout)
    want = tool_digest("md5sum", nginx.dir / "html/page.html")
    assert f["md5"] == want
    assert f["status"] == "200 OK"
    assert f["bytes"] == str(len(PAGE.encode()))
    assert f["address"] == f"127.0.0.1:{nginx.port}"
    assert f'expect_body_digest = "md5:{want}"' in r.stdout.splitlines()
    assert r.stderr == ""


def test_sha256_of_a_chunked_page_matches_sha256sum(halo, nginx):
    # The point of this test is the chunked framing: make sure nginx uses it.
    assert "Transfer-Encoding: chunked" in raw_head(nginx.port, "/chunked/page.html")
    r = genhash(halo, "--sha256", nginx.url("/chunked/page.html"))
    assert r.returncode == 0, r.stderr
    f = fields(r.stdout)
    assert f["sha256"] == tool_digest("sha256sum", nginx.dir / "html/chunked/page.html")
    assert f["sha256"] == hashlib.sha256(PAGE.encode()).hexdigest()
    assert f["bytes"] == str(len(PAGE.encode()))


def test_md5_of_a_chunked_page_is_the_same_as_the_plain_one(halo, nginx):
    a = fields(genhash(halo, nginx.url("/page.html")).stdout)["md5"]
    b = fields(genhash(halo, nginx.url("/chunked/page.html")).stdout)["md5"]
    assert a == b == hashlib.md5(PAGE.encode()).hexdigest()


def test_host_option_selects_the_virtual_host(halo, nginx):
    r = genhash(halo, "--host", "other.test", nginx.url("/page.html"))
    assert r.returncode == 0, r.stderr
    assert fields(r.stdout)["md5"] == tool_digest("md5sum", nginx.dir / "other/page.html")
    assert fields(r.stdout)["md5"] == hashlib.md5(OTHER.encode()).hexdigest()


def test_non_2xx_still_prints_the_digest_with_a_warning(halo, nginx):
    r = genhash(halo, nginx.url("/missing"))
    assert r.returncode == 0, r.stderr
    assert fields(r.stdout)["status"] == "404 Not Found"
    assert len(fields(r.stdout)["md5"]) == 32
    assert "warning: status 404 Not Found is not 2xx" in r.stderr


def test_non_http_urls_are_refused_clearly(halo):
    for url, why in [
        ("https://127.0.0.1/", "only http://"),
        ("ftp://127.0.0.1/", "only http://"),
        ("127.0.0.1/page.html", "not a URL"),
        ("http://127.0.0.1:0/", "invalid port"),
        ("http://::1/", "brackets"),
    ]:
        r = genhash(halo, url)
        assert r.returncode == 1, (url, r.stdout, r.stderr)
        assert r.stdout == ""
        assert why in r.stderr, (url, r.stderr)
        assert r.stderr.startswith("halo genhash: ")
        assert "panicked" not in r.stderr


def test_connection_refused_is_a_clear_error(halo, nginx):
    port = nginx.port
    nginx.stop()
    r = genhash(halo, f"http://127.0.0.1:{port}/page.html")
    assert r.returncode == 1
    assert r.stderr.strip() == f"halo genhash: 127.0.0.1:{port}: connection refused"


def test_a_silent_server_times_out(halo):
    # Accepts (the kernel completes the handshake) but never answers.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = genhash(halo, "--timeout", "0.5", f"http://127.0.0.1:{port}/")
    assert r.returncode == 1
    assert r.stderr.strip() == f"halo genhash: 127.0.0.1:{port}: timeout after 500ms"


def test_bad_timeout_is_refused(halo):
    r = genhash(halo, "--timeout", "0", "http://127.0.0.1/")
    assert r.returncode == 2
    assert "--timeout must be a positive number" in r.stderr
