"""`halo import` through the real binary: every keepalived and HAProxy config
quoted in the seed write-ups (tests/import/fixtures, copied verbatim) converts,
and `halo check` accepts the result.

No network, no root: the fixtures' own addresses are only text here. Values
the seeds leave open (Ansible placeholders, docker host names, a floating IP
moved by a provider API) are given with --set/--resolve/--vip, using
documentation addresses.
"""

import os
import re
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")
ROOT = os.path.dirname(os.path.dirname(HERE))

REPORT = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): directive '(?P<d>.+)' not carried over: (?P<why>.+)$")

LB_SET = ["--set", "lb1_ip_address=192.0.2.11", "--set", "lb2_ip_address=192.0.2.12"]
DOCKER_HOSTS = ["--resolve", "server1=192.0.2.21", "--resolve", "server2=192.0.2.22",
                "--resolve", "server3=192.0.2.23"]

# (keepalived fixture, haproxy fixture, extra args)
CASES = [
    ("000-pangrazzi-lb1.keepalived.conf", None, LB_SET + ["--vip", "VI_1=203.0.113.10/32"]),
    ("000-pangrazzi-lb2.keepalived.conf", None, LB_SET + ["--vip", "VI_1=203.0.113.10/32"]),
    # As the seed runs it: no address, notify_master moves the floating IP.
    ("000-pangrazzi-lb1.keepalived.conf", None, LB_SET),
    ("001-essay-active.keepalived.conf", "001-essay.haproxy.cfg", DOCKER_HOSTS),
    ("001-essay-passive.keepalived.conf", "001-essay.haproxy.cfg", DOCKER_HOSTS),
    (None, "001-essay.haproxy.cfg", DOCKER_HOSTS),
    ("002-techjockey-lb01-relined.keepalived.conf", None, []),
    ("003-ai-master.keepalived.conf", "003-ai.haproxy.cfg", []),
    ("003-ai-backup.keepalived.conf", "003-ai.haproxy.cfg", []),
    (None, "003-ai.haproxy.cfg", []),
    ("004-benyacoub-master.keepalived.conf", None, []),
    ("004-benyacoub-backup.keepalived.conf", None, []),
]


def _supports_import(path):
    try:
        r = subprocess.run([path, "import", "--help"], capture_output=True, timeout=30)
    except OSError:
        return False
    return r.returncode == 0


@pytest.fixture(scope="module")
def halo():
    b = os.environ.get("HALO_BIN")
    if b:
        return b
    found = [os.path.join(ROOT, p) for p in ("target/release/halo", "target/debug/halo")]
    found = sorted((p for p in found if os.path.exists(p)), key=os.path.getmtime, reverse=True)
    for p in found:
        if _supports_import(p):
            return p
    subprocess.run(["cargo", "build", "-q", "-p", "halo"], cwd=ROOT, check=True, timeout=1800)
    return os.path.join(ROOT, "target/debug/halo")


def fx(name):
    return os.path.join(FIXTURES, name)


def run_import(halo, keepalived, haproxy, extra):
    args = [halo, "import"]
    if keepalived:
        args += ["--keepalived", fx(keepalived)]
    if haproxy:
        args += ["--haproxy", fx(haproxy)]
    return subprocess.run(args + extra, capture_output=True, text=True, timeout=60)


def test_every_seed_config_has_a_fixture():
    names = sorted(os.listdir(FIXTURES))
    used = {n for k, h, _ in CASES for n in (k, h) if n}
    # The verbatim one-line seed is tested on its own below.
    assert set(names) - used == {"002-techjockey-lb01.keepalived.conf"}
    for n in names:
        with open(fx(n), encoding="utf-8") as f:
            head = f.readline()
        assert re.search(r"seed write-up \d{3}_[0-9a-f]{16}\.txt", head), n


@pytest.mark.parametrize("keepalived,haproxy,extra", CASES,
                         ids=[k or h for k, h, _ in CASES])
def test_fixture_imports_and_passes_halo_check(halo, tmp_path, keepalived, haproxy, extra):
    r = run_import(halo, keepalived, haproxy, extra)
    assert r.returncode == 0, r.stderr
    # Every stderr line is one directive with its file and line.
    inputs = {fx(n): n for n in (keepalived, haproxy) if n}
    for line in r.stderr.splitlines():
        m = REPORT.match(line)
        assert m, f"not a report line: {line!r}"
        assert m["file"] in inputs or m["file"] == "command line", line
        if m["file"] in inputs:
            with open(m["file"], encoding="utf-8") as f:
                assert 1 <= int(m["line"]) <= len(f.read().splitlines()), line
    # Every key names its source line, and that line exists.
    for m in re.finditer(r"^\s*# from (\S+):(\d+) ", r.stdout, re.M):
        assert m[1] in inputs.values() or m[1] == "command", m[0]
    out = tmp_path / "halo.toml"
    out.write_text(r.stdout)
    c = subprocess.run([halo, "check", "--config", str(out)], capture_output=True, text=True, timeout=60)
    assert c.returncode == 0, c.stderr + "\n---\n" + r.stdout
    assert f"{out}: OK" in c.stdout
    if keepalived:
        # keepalived's default VRRP version is 2, and none of the seeds sets 3.
        assert "version 2" in c.stdout
        assert "version = 2" in r.stdout


def test_haproxy_process_check_becomes_a_proxy_track(halo):
    r = run_import(halo, "001-essay-active.keepalived.conf", "001-essay.haproxy.cfg", DOCKER_HOSTS)
    assert r.returncode == 0, r.stderr
    # killall -0 haproxy, weight 2, priority 101: keepalived runs at 103 while
    # haproxy is up; halo runs at 103 and drops by 2 when its proxy is down.
    assert "priority = 103\n" in r.stdout
    assert '{ proxy = "http_in", weight = -2 },' in r.stdout
    assert "track_script" not in r.stderr


def test_vrrp_script_and_notify_hooks_are_carried(halo):
    r = run_import(halo, "003-ai-master.keepalived.conf", "003-ai.haproxy.cfg", [])
    assert r.returncode == 0
    # A check script other than a haproxy process check becomes halo's own
    # [track_script], and the notify_* lines become argv lists.
    assert "track_script chk_haproxy" not in r.stderr
    assert "[track_script.chk_haproxy]" in r.stdout
    assert 'command = ["/etc/keepalived/check_haproxy.sh"]' in r.stdout
    assert '{ script = "chk_haproxy", weight = -2 },' in r.stdout
    assert 'notify_master = ["/etc/keepalived/notify.sh", "master"]' in r.stdout
    assert "directive 'notify_master'" not in r.stderr
    assert f"{fx('003-ai.haproxy.cfg')}:31: directive 'listen stats' not carried over" in r.stderr


def test_template_placeholders_and_missing_vip_are_explained(halo):
    r = run_import(halo, "000-pangrazzi-lb1.keepalived.conf", None, [])
    assert r.returncode == 1
    name = fx("000-pangrazzi-lb1.keepalived.conf")
    assert (f"{name}:17: directive 'unicast_src_ip' not carried over: '{{{{ lb1_ip_address }}}}' "
            "is a template placeholder: render the template, or pass --set lb1_ip_address=VALUE") in r.stderr
    # The instance has a notify_master: it needs no --vip (it may hold no
    # address), only its placeholders filled.
    assert "--vip" not in r.stderr
    assert r.stderr.rstrip().endswith("nothing could be carried over: no [vrrp.*] instance or [proxy.*] service to write")
    assert r.stdout == ""


def test_host_names_need_resolve(halo):
    r = run_import(halo, None, "001-essay.haproxy.cfg", [])
    assert r.returncode == 1
    assert "\"server1\" is a host name and halo connects to addresses (it does no DNS): pass --resolve server1=ADDRESS" in r.stderr


def test_verbatim_one_line_seed_is_refused_with_its_line(halo):
    r = run_import(halo, "002-techjockey-lb01.keepalived.conf", None, [])
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.strip() == (
        f"{fx('002-techjockey-lb01.keepalived.conf')}:3: '{{' of 'global_defs' is never closed; "
        "the comment on line 3 contains braces: were this file's line breaks lost? "
        "A '#' or '!' comments out the rest of its line")


def test_unreadable_input_and_no_input(halo, tmp_path):
    missing = tmp_path / "nope.cfg"
    r = subprocess.run([halo, "import", "--haproxy", str(missing)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith(f"{missing}: cannot read:")
    r = subprocess.run([halo, "import"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, "clap refuses a call without --keepalived or --haproxy"
    assert "--keepalived" in r.stderr


def test_haproxy_syntax_error_has_file_and_line(halo, tmp_path):
    bad = tmp_path / "haproxy.cfg"
    bad.write_text("global\n  daemon\nfrontend fe\n  bind \"*:80\n")
    r = subprocess.run([halo, "import", "--haproxy", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == f"{bad}:4: unterminated quoted string (no closing \" on this line)"
