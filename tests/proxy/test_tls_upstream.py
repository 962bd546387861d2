"""TLS to the servers (issue 17), on both I/O drivers: halo in front of a
real nginx that listens with `ssl`, its certificate made here by a test
CA with `openssl`. A verified request (by SNI name and by IP address),
keep-alive connections to the TLS server reused from the pool, one the
server closed while idle not reused (and the new one resuming the TLS
session), a `mode = "tcp"` relay to a TLS server, a wrong
CA, a wrong name, the default verification (system CAs) and misbehaving
TLS servers (garbage, a close in the handshake, silence) answered with
502/503 and a log line saying why; HTTPS health checks that mark a server
down for a bad certificate or a stopped server and up again when fixed,
a CA file changed under an unchanged halo.toml picked up by a reload.

Everything listens on 127.0.0.1.
"""

import http.client
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest

import localfix
from localfix import free_port, halo_bin, nginx_conf, toml_str

WAIT = 60.0


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(d, name):
    key, crt = os.path.join(d, f"{name}.key"), os.path.join(d, f"{name}.crt")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", crt, "-days", "2", "-subj", f"/CN={name}")
    return {"key": key, "crt": crt}


def make_leaf(d, name, ca, san):
    """A server certificate for `san` signed by `ca`: NAME.crt, NAME.key."""
    key, csr, crt = (os.path.join(d, f"{name}.{e}") for e in ("key", "csr", "crt"))
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    openssl("x509", "-req", "-in", csr, "-CA", ca["crt"], "-CAkey", ca["key"], "-CAcreateserial",
            "-out", crt, "-days", "2", "-extfile", ext)
    return {"key": key, "crt": crt}


class TlsNginx(localfix.Nginx):
    """nginx with `listen ... ssl` on loopback; every answer says the TLS
    version, the connection's number and its request count."""

    def __init__(self, d, leaf):
        os.makedirs(d, exist_ok=True)
        port = free_port()
        self.short_port = free_port()
        self.cert = os.path.join(d, "server.crt")
        self.key = os.path.join(d, "server.key")
        self.use(leaf)
        conf = nginx_conf(d, f"""    keepalive_timeout 75s;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port} ssl reuseport;
        ssl_certificate {self.cert};
        ssl_certificate_key {self.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            default_type text/plain;
            return 200 "tls=$ssl_protocol sni=$ssl_server_name conn=$connection n=$connection_requests\\n";
        }}
    }}
    server {{
        # Closes idle connections (close_notify, then FIN) after 1 s.
        listen 127.0.0.1:{self.short_port} ssl reuseport;
        keepalive_timeout 1s;
        ssl_certificate {self.cert};
        ssl_certificate_key {self.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            default_type text/plain;
            return 200 "conn=$connection n=$connection_requests reused=$ssl_session_reused\\n";
        }}
    }}
""", connections=256, processes="worker_processes 1;")
        super().__init__("tls-nginx", d, conf, port)

    def use(self, leaf):
        """Serve `leaf` (after a reload of nginx when it runs)."""
        for src, dst in ((leaf["crt"], self.cert), (leaf["key"], self.key)):
            with open(src) as s, open(dst, "w") as t:
                t.write(s.read())
            os.chmod(dst, 0o644)
        if getattr(self, "proc", None):
            subprocess.run([localfix.NGINX, "-p", self.dir, "-c", str(self.conf), "-s", "reload"],
                           check=True, capture_output=True)


class BadTlsServer(threading.Thread):
    """A loopback server that misbehaves where a TLS server should
    answer: `garbage` writes plain text, `close` reads the ClientHello and
    closes, `silent` never answers."""

    def __init__(self, how):
        super().__init__(daemon=True)
        self.how = how
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.stopped = False
        self.start()

    def run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                if self.how == "garbage":
                    c.recv(4096)
                    c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 4)
                    c.close()
                elif self.how == "close":
                    c.recv(4096)
                    c.close()
                else:
                    self.held.append(c)
            except OSError:
                c.close()

    def close(self):
        self.stopped = True
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.fixture(params=["uring", "epoll"])
def io(request):
    return request.param


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pki"))
    os.chmod(d, 0o755)
    ca = make_ca(d, "ca")
    other = make_ca(d, "other-ca")
    good = make_leaf(d, "web1", ca, "DNS:web1.example,IP:127.0.0.1")
    foreign = make_leaf(d, "foreign", other, "DNS:web1.example,IP:127.0.0.1")
    return {"dir": d, "ca": ca, "other": other, "good": good, "foreign": foreign}


@pytest.fixture
def tls_nginx(pki, tmp_path):
    d = str(tmp_path / "nginx")
    os.makedirs(d)
    os.chmod(d, 0o755)
    n = TlsNginx(d, pki["good"]).start()
    yield n
    if n.proc:
        n.stop()


def get(port, path="/", conn=None):
    """(status, body) of a GET to halo on `port`, on `conn` (kept alive)
    or a new connection."""
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path, headers={"Host": "web1.example"})
    r = c.getresponse()
    body = r.read().decode()
    if conn is None:
        c.close()
    return r.status, body


def wait_log(h, pattern, since=0):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        m = re.search(pattern, h.log()[since:])
        if m:
            return m
        time.sleep(0.1)
    raise AssertionError(f"no log line matching {pattern!r}:\n{h.log()[since:]}")


def service(name, port, io, address, tls, extra=""):
    return (f"[proxy.{name}]\nbind = [\"127.0.0.1:{port}\"]\nio = \"{io}\"\nworkers = 1\nretries = 0\n"
            f"servers = [{{ name = \"s\", address = \"{address}\", tls = {tls} }}]\n{extra}")


def test_requests_to_an_https_server_verified_pooled_or_refused(pki, tls_nginx, tmp_path, io):
    ca = toml_str(pki["ca"]["crt"])
    wrong = toml_str(pki["other"]["crt"])
    up = f"127.0.0.1:{tls_nginx.port}"
    bad = {how: BadTlsServer(how) for how in ("garbage", "close", "silent")}
    cases = {
        "by_name": (up, f"{{ verify = {ca}, sni = \"web1.example\" }}"),
        "by_ip": (up, f"{{ verify = {ca} }}"),
        "no_verify": (up, "{ verify = \"none\" }"),
        "short": (f"127.0.0.1:{tls_nginx.short_port}", f"{{ verify = {ca} }}"),
        "tcp": (up, f"{{ verify = {ca}, sni = \"web1.example\" }}"),
        "wrong_ca": (up, f"{{ verify = {wrong}, sni = \"web1.example\" }}"),
        "wrong_name": (up, f"{{ verify = {ca}, sni = \"web2.example\" }}"),
        "system_cas": (up, "{ sni = \"web1.example\" }"),
        "garbage": (f"127.0.0.1:{bad['garbage'].port}", "{ verify = \"none\" }"),
        "close": (f"127.0.0.1:{bad['close'].port}", "{ verify = \"none\" }"),
        "silent": (f"127.0.0.1:{bad['silent'].port}", "{ verify = \"none\" }"),
    }
    ports = {name: free_port() for name in cases}
    text = f"[global]\ncontrol_socket = {toml_str(str(tmp_path / 'halo.sock'))}\nlog_level = \"info\"\n"
    for name, (address, tls) in cases.items():
        extra = {"silent": "[proxy.silent.timeouts]\nconnect = \"1s\"\n", "tcp": "mode = \"tcp\"\n"}.get(name, "")
        text += service(name, ports[name], io, address, tls, extra)
    h = localfix.Halo(str(tmp_path), text, port=ports["silent"])
    # `verify = "none"` is allowed, and said to be a risk.
    r = h.check()
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"halo\.toml:\d+:\d+: warning: `verify = \"none\"`: the server's certificate is not checked",
                     r.stdout + r.stderr), r.stdout + r.stderr
    h.start()
    try:
        # Verified by name (sent as SNI) and by IP address (no SNI).
        status, body = get(ports["by_name"])
        assert status == 200 and "sni=web1.example " in body, body
        assert re.match(r"tls=TLSv1\.3 ", body), body
        status, body = get(ports["by_ip"])
        assert status == 200 and "sni= " in body, body
        status, body = get(ports["no_verify"])
        assert status == 200, body

        # Keep-alive to the TLS server: one halo connection from the pool
        # carries request after request (nginx counts them on it), also
        # when each request comes on a new client connection.
        seen = []
        for _ in range(6):
            status, body = get(ports["by_name"])
            assert status == 200, body
            seen.append(re.search(r"conn=(\d+) n=(\d+)", body).groups())
        conns = {c for c, _ in seen}
        assert len(conns) == 1, seen
        counts = [int(n) for _, n in seen]
        assert counts == list(range(counts[0], counts[0] + 6)), seen

        # A pooled connection the server closed (close_notify, FIN) while
        # it was idle is not used: a POST (never sent twice) gets a new one.
        status, first = get(ports["short"])
        assert status == 200, first
        time.sleep(3)
        c = http.client.HTTPConnection("127.0.0.1", ports["short"], timeout=30)
        c.request("POST", "/", body=b"x" * 1000, headers={"Host": "web1.example"})
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        assert r.status == 200 and re.search(r" n=1 ", body), (first, body)
        # ... resuming the TLS session of the first (rustls' session cache).
        assert "reused=r" in body, (first, body)

        # mode = "tcp": the client's bytes go to the server over TLS.
        with socket.create_connection(("127.0.0.1", ports["tcp"]), timeout=30) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: web1.example\r\nConnection: close\r\n\r\n")
            got = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                got += b
        assert got.startswith(b"HTTP/1.1 200") and b"sni=web1.example " in got, got

        # Refused certificates: 502, and a warning that says why.
        for name, why in (("wrong_ca", r"invalid peer certificate: UnknownIssuer"),
                          ("wrong_name", r"certificate not valid for name \"web2\.example\""),
                          ("system_cas", r"invalid peer certificate: UnknownIssuer")):
            status, _ = get(ports[name])
            assert status == 502, name
            wait_log(h, rf"WARN TLS handshake with {re.escape(up)} failed: .*{why}.* service={name} server=s")
            wait_log(h, rf"service={name} .*status=502 .*note=\"tls handshake failed\"")

        # Servers that break TLS: a 502 (not the connect timeout's 503:
        # no waiting), and the silent one ends at timeouts.connect.
        for name in ("garbage", "close"):
            status, _ = get(ports[name])
            assert status == 502, name
            wait_log(h, rf"service={name} .*status=502 .*note=\"tls handshake failed\"")
        status, _ = get(ports["silent"])
        assert status == 503
        wait_log(h, r"service=silent .*status=503 .*note=\"connect timeout\"")

        # Still serving after all of it.
        assert h.proc.poll() is None
        assert get(ports["by_name"])[0] == 200
    finally:
        h.stop()
        for b in bad.values():
            b.close()


def status_of(h):
    r = subprocess.run([halo_bin(), "status", "--json", "--socket", str(h.socket)], capture_output=True,
                       text=True, timeout=30, check=True)
    return json.loads(r.stdout)["proxy"][0]["servers"][0]


def test_https_health_checks_follow_the_certificate_and_the_ca_file(pki, tls_nginx, tmp_path, io):
    """A check inherits the server's tls: a CA that does not sign the
    server's certificate marks it down (with the reason), the right CA
    written to the same file and `halo reload` brings it up, a stopped
    server is down again, restarted it is up; a certificate from another
    CA on the server marks it down."""
    ca_file = str(tmp_path / "ca.pem")
    with open(ca_file, "w") as f:
        f.write(open(pki["other"]["crt"]).read())
    port = free_port()
    text = (f"[global]\ncontrol_socket = {toml_str(str(tmp_path / 'halo.sock'))}\nlog_level = \"info\"\n"
            + service("web", port, io, f"127.0.0.1:{tls_nginx.port}",
                      f"{{ verify = \"ca.pem\", sni = \"web1.example\" }}",
                      "[proxy.web.health]\npath = \"/\"\ninterval = \"1s\"\nrise = 1\nfall = 1\n"))
    h = localfix.Halo(str(tmp_path), text, port=port).start()
    try:
        wait_log(h, r"web/s DOWN: .*TLS handshake: invalid peer certificate: UnknownIssuer")
        assert not status_of(h)["healthy"]
        assert get(port)[0] == 503

        with open(ca_file, "w") as f:
            f.write(open(pki["ca"]["crt"]).read())
        mark = len(h.log())
        r = subprocess.run([halo_bin(), "reload", "--socket", str(h.socket)], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        wait_log(h, r"web/s UP: .*200 OK", since=mark)
        assert get(port)[0] == 200

        mark = len(h.log())
        tls_nginx.stop()
        wait_log(h, r"web/s DOWN: .*connection refused", since=mark)
        mark = len(h.log())
        tls_nginx.start()
        wait_log(h, r"web/s UP: ", since=mark)

        mark = len(h.log())
        tls_nginx.use(pki["foreign"])
        wait_log(h, r"web/s DOWN: .*TLS handshake: invalid peer certificate: UnknownIssuer", since=mark)
        mark = len(h.log())
        tls_nginx.use(pki["good"])
        wait_log(h, r"web/s UP: ", since=mark)
        assert get(port)[0] == 200
    finally:
        h.stop()


def test_a_bad_ca_file_is_a_located_error_and_a_reload_keeps_the_old(pki, tmp_path):
    empty = tmp_path / "empty.pem"
    empty.write_text("no PEM here\n")
    port = free_port()
    text = (f"[global]\ncontrol_socket = {toml_str(str(tmp_path / 'halo.sock'))}\n"
            + service("web", port, "epoll", "127.0.0.1:9", "{ verify = \"empty.pem\" }"))
    h = localfix.Halo(str(tmp_path), text, port=port)
    r = h.check()
    assert r.returncode != 0
    assert re.search(r"halo\.toml:\d+:\d+: .*empty\.pem: no certificate in it", r.stdout + r.stderr), \
        r.stdout + r.stderr
    (tmp_path / "missing.toml").write_text(text.replace("empty.pem", "nonexistent.pem"))
    r = subprocess.run([halo_bin(), "check", "-c", str(tmp_path / "missing.toml")], capture_output=True, text=True)
    assert r.returncode != 0 and "cannot read " in r.stdout + r.stderr, r.stdout + r.stderr

    # A running halo keeps its CA when the file turns bad.
    empty.write_text(open(pki["ca"]["crt"]).read())
    h.start()
    try:
        empty.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        r = subprocess.run([halo_bin(), "reload", "--socket", str(h.socket)], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode != 0 and "empty.pem" in r.stdout + r.stderr, r.stdout + r.stderr
        assert h.proc.poll() is None
    finally:
        h.stop()
