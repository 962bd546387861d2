"""TLS termination on proxy binds (issue 17), on both I/O drivers, in front
of the real nginx backends: curl over TLS 1.2 and 1.3, SNI picking among
certificates (exact, wildcard, default), the HTTPS redirect and HSTS,
X-Forwarded-Proto, bad certificates refused by `halo check` and by a
reload (which keeps serving the old ones), a reload swapping the
certificate under a bounded load with no failed request, and testssl.sh
finding no weak protocol or cipher.

Certificates are made here with `openssl`; everything listens on 127.0.0.1.
"""

import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

from localfix import free_port, halo_bin, kill, toml_str, wait_port
from proxyfix import servers_of


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_cert(d, name, names, rsa=False):
    """A self-signed certificate for `names` (the first is the CN), valid
    for two days: NAME.crt, NAME.key, and NAME.pem with both."""
    key, crt, pem = (os.path.join(d, f"{name}.{ext}") for ext in ("key", "crt", "pem"))
    kind = ["-newkey", "rsa:2048"] if rsa else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    openssl("req", "-x509", *kind, "-nodes", "-keyout", key, "-out", crt, "-days", "2",
            "-subj", f"/CN={names[0]}", "-addext", "subjectAltName=" + ",".join("DNS:" + n for n in names))
    with open(pem, "w") as f:
        f.write(open(crt).read() + open(key).read())
    return {"crt": crt, "key": key, "pem": pem, "der": der_of(crt)}


def der_of(crt):
    return ssl.PEM_cert_to_DER_cert(open(crt).read())


def expired_cert(d):
    """A certificate that ended on 2021-01-01 (`openssl ca` sets dates)."""
    key, csr, crt, pem = (os.path.join(d, f"old.{e}") for e in ("key", "csr", "crt", "pem"))
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=old.example")
    db = os.path.join(d, "ca")
    os.makedirs(db, exist_ok=True)
    open(os.path.join(db, "index.txt"), "w").close()
    with open(os.path.join(db, "serial"), "w") as f:
        f.write("01\n")
    cnf = os.path.join(db, "ca.cnf")
    with open(cnf, "w") as f:
        f.write(f"[ca]\ndefault_ca = d\n[d]\ndatabase = {db}/index.txt\nnew_certs_dir = {db}\n"
                f"serial = {db}/serial\npolicy = p\ndefault_md = sha256\n[p]\ncommonName = supplied\n")
    openssl("ca", "-batch", "-config", cnf, "-selfsign", "-keyfile", key, "-in", csr, "-out", crt,
            "-startdate", "20200101000000Z", "-enddate", "20210101000000Z", "-notext")
    with open(pem, "w") as f:
        f.write(open(crt).read() + open(key).read())
    return pem


def cert_entry(c):
    """A `certificates` entry: the chain+key file, or cert and key apart."""
    if isinstance(c, str):
        return toml_str(c)
    return "{ cert = %s, key = %s }" % (toml_str(c["crt"]), toml_str(c["key"]))


class TlsHalo:
    """halo with a TLS bind (and a plain redirect bind) on loopback."""

    def __init__(self, d, io, backends, certs, hsts=None, redirect=True, mode="http"):
        self.d = d
        self.tls_port = free_port()
        self.plain_port = free_port()
        self.sock = os.path.join(d, "halo.sock")
        self.cfg = os.path.join(d, "halo.toml")
        self.log_path = os.path.join(d, "halo.log")
        self.io = io
        self.backends = backends
        self.hsts = hsts
        self.redirect = redirect
        self.mode = mode
        self.write(certs)
        self.proc = None

    def write(self, certs):
        binds = [f'{{ address = "127.0.0.1:{self.tls_port}", tls = {{ certificates = '
                 f'[{", ".join(cert_entry(c) for c in certs)}] }} }}']
        if self.redirect:
            binds.append(f'{{ address = "127.0.0.1:{self.plain_port}", redirect_https = true }}')
        lines = [
            "[global]",
            f"control_socket = {toml_str(self.sock)}",
            'log_level = "info"',
            "[proxy.web]",
            f'mode = "{self.mode}"',
            f"bind = [{', '.join(binds)}]",
            f'io = "{self.io}"',
            "workers = 1",
            "servers = [",
        ]
        lines += [f'  {{ name = "{s["name"]}", address = "{s["address"]}" }},' for s in servers_of(self.backends)]
        lines.append("]")
        if self.hsts:
            lines.append(f"hsts = {toml_str(self.hsts)}")
        with open(self.cfg, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen([halo_bin(), "run", "-c", self.cfg], stdout=self.logf,
                                     stderr=subprocess.STDOUT, env=dict(os.environ, NO_COLOR="1"))
        try:
            wait_port(self.tls_port, proc=self.proc, timeout=60.0)
        except Exception:
            self.stop()
            raise RuntimeError("halo did not start:\n" + open(self.log_path).read())
        return self

    def reload(self):
        return subprocess.run([halo_bin(), "reload", "--socket", self.sock], capture_output=True,
                              text=True, timeout=60)

    def stop(self):
        kill(self.proc)
        self.proc = None
        self.logf.close()


@pytest.fixture
def tls_halo(tmp_path, io, backends_alive):
    made = []

    def make(certs, **kw):
        h = TlsHalo(str(tmp_path), io, backends_alive, certs, **kw)
        made.append(h)
        return h.start()

    yield make
    for h in made:
        if h.proc:
            h.stop()


def client_ctx(version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def recv_until_close(s):
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            return data
        data += b


def fetch(port, sni, path="/", host=None, version=None):
    """One request on a new TLS connection: (server certificate DER,
    TLS version, raw response)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with client_ctx(version).wrap_socket(raw, server_hostname=sni) as t:
            der = t.getpeercert(binary_form=True)
            t.sendall(f"GET {path} HTTP/1.1\r\nHost: {host or sni or 'x'}\r\nConnection: close\r\n\r\n".encode())
            return der, t.version(), recv_until_close(t)


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "30", *args], capture_output=True, text=True)


def test_curl_over_tls12_and_tls13_with_forwarded_proto(tmp_path, tls_halo):
    site = make_cert(str(tmp_path), "site", ["www.site.example"])
    h = tls_halo([site["pem"]])
    for v in ("1.2", "1.3"):
        r = curl("-v", f"--tlsv{v}", "--tls-max", v, "--cacert", site["crt"],
                 "--resolve", f"www.site.example:{h.tls_port}:127.0.0.1",
                 f"https://www.site.example:{h.tls_port}/headers")
        assert r.returncode == 0, r.stderr
        assert f"SSL connection using TLSv{v}" in r.stderr, r.stderr
        assert "ALPN: server accepted http/1.1" in r.stderr, r.stderr
        # The servers hear that the client came over TLS.
        assert "proto=https\n" in r.stdout, r.stdout
        assert "fwd=for=127.0.0.1;proto=https\n" in r.stdout, r.stdout
    # A 1 MiB page through TLS arrives whole (several TLS records).
    path = h.backends[0].big_file("tls-1m.bin", 1 << 20)
    for b in h.backends[1:]:
        b.big_file("tls-1m.bin", 1 << 20)
    r = curl("-k", "-o", os.devnull, "-w", "%{http_code} %{size_download}",
             f"https://127.0.0.1:{h.tls_port}{path}")
    assert r.stdout == f"200 {1 << 20}", r.stdout + r.stderr


def test_sni_picks_the_certificate_and_default(tmp_path, tls_halo):
    d = str(tmp_path)
    default = make_cert(d, "default", ["default.example"], rsa=True)
    site = make_cert(d, "site", ["www.site.example", "*.site.example"])
    other = make_cert(d, "other", ["other.example"], rsa=True)
    # The first is the default; `other` comes as separate cert and key files.
    h = tls_halo([default["pem"], site["pem"], other])
    cases = [
        ("www.site.example", site),
        ("WWW.SITE.EXAMPLE", site),
        ("api.site.example", site),      # wildcard
        ("a.b.site.example", default),   # a wildcard covers one label
        ("other.example", other),
        ("unknown.example", default),
        (None, default),                 # no SNI
    ]
    for sni, want in cases:
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            der, v, resp = fetch(h.tls_port, sni, version=version)
            assert der == want["der"], (sni, version)
            assert resp.startswith(b"HTTP/1.1 200 "), resp[:200]


def test_redirect_https_and_hsts(tmp_path, tls_halo):
    site = make_cert(str(tmp_path), "site", ["www.site.example"])
    h = tls_halo([site["pem"]], hsts="max-age=600; includeSubDomains")
    r = curl("-D", "-", "-o", os.devnull, "-H", "Host: www.site.example:80",
             f"http://127.0.0.1:{h.plain_port}/a/b?c=1")
    assert r.stdout.startswith("HTTP/1.1 308 "), r.stdout
    # (text mode: curl's CRLF read as \n)
    assert f"Location: https://www.site.example:{h.tls_port}/a/b?c=1\n" in r.stdout, r.stdout
    # HSTS is for HTTPS answers only (browsers ignore it over plain HTTP).
    assert "Strict-Transport-Security" not in r.stdout
    # curl follows the redirect over TLS to nginx.
    r = curl("-L", "--cacert", site["crt"], "-D", "-",
             "--resolve", f"www.site.example:{h.plain_port}:127.0.0.1",
             "--resolve", f"www.site.example:{h.tls_port}:127.0.0.1",
             f"http://www.site.example:{h.plain_port}/headers")
    assert r.returncode == 0, r.stderr
    assert "Strict-Transport-Security: max-age=600; includeSubDomains\n" in r.stdout, r.stdout
    assert "proto=https\n" in r.stdout
    # Keep-alive on the redirect bind: two requests, one connection.
    with socket.create_connection(("127.0.0.1", h.plain_port), timeout=30) as s:
        s.sendall(b"GET /1 HTTP/1.1\r\nHost: a.example\r\n\r\nGET /2 HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n")
        data = recv_until_close(s)
    assert data.count(b"HTTP/1.1 308 ") == 2, data
    assert f"https://a.example:{h.tls_port}/2".encode() in data


def test_bad_certificates_refused_by_check(tmp_path, backends_alive):
    d = str(tmp_path)
    a = make_cert(d, "a", ["a.example"])
    b = make_cert(d, "b", ["b.example"])
    old = expired_cert(d)
    junk = os.path.join(d, "junk.pem")
    with open(junk, "w") as f:
        f.write("not a certificate\n")
    keyless = a["crt"]
    h = TlsHalo(d, "epoll", backends_alive,
                [old, {"crt": a["crt"], "key": b["key"]}, os.path.join(d, "missing.pem"), junk, keyless])
    r = subprocess.run([halo_bin(), "check", "-c", h.cfg], capture_output=True, text=True)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    lines = [l for l in out.splitlines() if l.startswith(h.cfg + ":")]
    assert len(lines) == 5, out
    assert f"{old}: certificate expired on 2021-01-01 00:00:00 UTC" in lines[0]
    assert f"the private key in {b['key']} does not match the certificate in {a['crt']}" in lines[1]
    assert f"cannot read {d}/missing.pem: No such file" in lines[2]
    assert f"{junk}: no certificate in it" in lines[3]
    assert f"{keyless}: no private key in it" in lines[4]
    # A certificate close to its end (two days here) is a warning.
    ok = TlsHalo(d, "epoll", backends_alive, [a["pem"]])
    r = subprocess.run([halo_bin(), "check", "-c", ok.cfg], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"warning: {a['pem']}: certificate expires on " in r.stdout + r.stderr, r.stdout + r.stderr
    # Each is located: FILE:LINE:COL.
    bind_line = str(next(i for i, l in enumerate(open(h.cfg), 1) if l.startswith("bind")))
    assert all(l.split(":")[1] == bind_line and l.split(":")[2].isdigit() for l in lines), lines


def test_bad_certificate_on_reload_keeps_serving(tmp_path, tls_halo):
    d = str(tmp_path)
    site = make_cert(d, "site", ["www.site.example"])
    h = tls_halo([site["pem"]])
    with open(site["pem"], "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    r = h.reload()
    assert r.returncode != 0
    assert site["pem"] in r.stdout + r.stderr, r.stdout + r.stderr
    assert "still running" in r.stdout + r.stderr or "bad PEM" in r.stdout + r.stderr
    der, _, resp = fetch(h.tls_port, "www.site.example")
    assert der == site["der"]
    assert resp.startswith(b"HTTP/1.1 200 ")


def test_reload_swaps_certificate_under_load(tmp_path, tls_halo):
    """New TLS connections in a bounded loop (4 clients, at most 60 s)
    while the certificate files are replaced and halo reloads: no request
    fails, the new certificate appears, and a keep-alive connection opened
    before the reload still gets its next answer."""
    d = str(tmp_path)
    one = make_cert(d, "one", ["www.site.example"])
    two = make_cert(os.path.join(d), "two", ["www.site.example"])
    live = os.path.join(d, "live.pem")
    shutil.copy(one["pem"], live)
    h = tls_halo([live])

    ka = client_ctx().wrap_socket(socket.create_connection(("127.0.0.1", h.tls_port), timeout=30),
                                  server_hostname="www.site.example")
    ka.sendall(b"GET / HTTP/1.1\r\nHost: www.site.example\r\n\r\n")
    first = ka.recv(65536)
    assert first.startswith(b"HTTP/1.1 200 "), first

    stop = threading.Event()
    results = {"ok": 0, "fail": [], "seen": set()}
    lock = threading.Lock()
    deadline = time.monotonic() + 60

    def client():
        n = 0
        while not stop.is_set() and n < 2000 and time.monotonic() < deadline:
            n += 1
            try:
                der, _, resp = fetch(h.tls_port, "www.site.example")
                good = resp.startswith(b"HTTP/1.1 200 ")
            except OSError as e:
                der, good, resp = None, False, repr(e).encode()
            with lock:
                if good:
                    results["ok"] += 1
                    results["seen"].add("two" if der == two["der"] else "one")
                else:
                    results["fail"].append(resp[:200])

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        while results["ok"] < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Replace the file atomically, as certbot's deploy hooks do.
        shutil.copy(two["pem"], live + ".new")
        os.rename(live + ".new", live)
        r = h.reload()
        assert r.returncode == 0, r.stdout + r.stderr
        while "two" not in results["seen"] and time.monotonic() < deadline:
            time.sleep(0.05)
        target = results["ok"] + 20
        while results["ok"] < target and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert results["fail"] == [], results["fail"][:5]
    assert results["seen"] == {"one", "two"}, results
    # The connection from before the reload was not dropped: it is served
    # once more (and told to close, as every connection a reload retires).
    ka.sendall(b"GET / HTTP/1.1\r\nHost: www.site.example\r\n\r\n")
    again = recv_until_close(ka)
    ka.close()
    assert again.startswith(b"HTTP/1.1 200 "), again[:200]
    der, _, _ = fetch(h.tls_port, "www.site.example")
    assert der == two["der"]


@pytest.mark.parametrize("io", ["epoll"])
def test_testssl_finds_no_weak_protocol_or_cipher(tmp_path, tls_halo):
    """testssl.sh's protocol and cipher-category checks only (bounded:
    about 30 s), against an RSA default certificate (where RSA key exchange
    would show) and an ECDSA one."""
    testssl = shutil.which("testssl") or shutil.which("testssl.sh")
    assert testssl, "testssl.sh is in tests/proxy/apt-packages.txt"
    d = str(tmp_path)
    rsa = make_cert(d, "rsa", ["rsa.example"], rsa=True)
    ec = make_cert(d, "ec", ["ec.example"])
    h = tls_halo([rsa["pem"], ec["pem"]], redirect=False)
    out = os.path.join(d, "testssl.json")
    r = subprocess.run([testssl, "--quiet", "--color", "0", "--warnings", "off", "-p", "-s",
                        "--jsonfile", out, f"127.0.0.1:{h.tls_port}"],
                       capture_output=True, text=True, timeout=600)
    findings = {f["id"]: f for f in json.load(open(out))}
    for proto in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert findings[proto]["finding"] == "not offered", (findings[proto], r.stdout[-3000:])
    for proto in ("TLS1_2", "TLS1_3"):
        assert findings[proto]["finding"].startswith("offered"), findings[proto]
    # NULL, anonymous, export, LOW, 3DES/IDEA and "AVERAGE" (obsolete CBC,
    # where RSA key exchange suites would fall) all absent.
    for cat in ("NULL", "aNULL", "EXPORT", "LOW", "3DES_IDEA", "AVERAGE"):
        assert findings[f"cipherlist_{cat}"]["finding"] == "not offered", findings[f"cipherlist_{cat}"]
    weak = [f for f in findings.values() if f["severity"] in ("LOW", "MEDIUM", "HIGH", "CRITICAL")]
    assert weak == [], weak


def test_tcp_mode_terminates_tls_too(tmp_path, tls_halo):
    """`mode = "tcp"` with a TLS bind: TLS ends at halo and the bytes go to
    the server as they are (HAProxy's `mode tcp` + `bind ... ssl`). No
    ALPN is offered: halo does not know the protocol inside."""
    site = make_cert(str(tmp_path), "site", ["www.site.example"])
    h = tls_halo([site["pem"]], redirect=False, mode="tcp")
    r = curl("-v", "--cacert", site["crt"], "--resolve", f"www.site.example:{h.tls_port}:127.0.0.1",
             f"https://www.site.example:{h.tls_port}/headers")
    assert r.returncode == 0, r.stderr
    assert "ALPN: server did not agree" in r.stderr or "ALPN, server did not agree" in r.stderr, r.stderr
    # Relayed unchanged: nginx saw no X-Forwarded-Proto from halo.
    assert "proto=\n" in r.stdout, r.stdout
