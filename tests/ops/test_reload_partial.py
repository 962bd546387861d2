"""A reload that fails half-way keeps what it applied, and halo knows it
(issue 19, reload as a plan).

A reload applies its changes in order (admin, proxy, l4, track scripts,
VRRP) and stops at the first that fails. Before, the proxy's new servers
were running after such a reload while the daemon still held the old
config: `halo server drain web/web2` then looked web2 up in the old list
(second of two) and drained the second server of the new list, web1. And
the error said "still running the previous config", which was not true of
the proxy.

Real nginx backends on loopback, halo driven through `halo reload` and
`halo server`, `halo status --json` read back. The reload fails on a
track script whose user does not exist (`halo check` cannot know that; the
daemon finds out when it starts the scripts, after the proxy).
"""

import json
import tempfile
from pathlib import Path

from health.healthfix import Nginx
from localfix import kill
from ops.test_drain_disable import config as drain_config, ctl
from ops.test_reload_proxy import start_halo


def config(port, servers, sock, script=""):
    # test_drain_disable's: one worker, no [health], long timeouts.
    return drain_config(port, servers, sock, "epoll") + script


# A user that does not exist: the track scripts fail to start.
BAD_SCRIPT = """
[track_script.chk]
command = ["/bin/true"]
weight = -10
user = "halo-no-such-user"
"""


def admin_states(sock):
    r = ctl(sock, "status", "--json")
    assert r.returncode == 0, r
    web = next(s for s in json.loads(r.stdout)["proxy"] if s["name"] == "web")
    return {v["name"]: v["admin"] for v in web["servers"]}


def test_a_failed_reload_keeps_what_it_applied_and_names_servers_by_it():
    with tempfile.TemporaryDirectory(prefix="halo-partial-") as d:
        tmp = Path(d)
        sock = str(tmp / "halo.sock")
        webs = []
        halo = None
        try:
            for i in range(3):
                (tmp / f"w{i}").mkdir()
                webs.append(Nginx(tmp / f"w{i}"))
            two = [("web1", webs[1].port), ("web2", webs[2].port)]
            three = [("web0", webs[0].port)] + two
            halo, port, log = start_halo(tmp, lambda p: config(p, two, sock))
            cfg = tmp / "halo.toml"

            # web0 comes first: web2 is now the third server, not the second.
            cfg.write_text(config(port, three, sock, BAD_SCRIPT))
            r = ctl(sock, "reload")
            assert r.returncode != 0, r
            err = r.stdout + r.stderr
            assert "halo-no-such-user" in err, err
            assert "applied partly" in err and "applied: proxy" in err, err
            assert "still running the previous config" not in err, err
            assert list(admin_states(sock)) == ["web0", "web1", "web2"]

            r = ctl(sock, "server", "drain", "web/web2")
            assert r.returncode == 0, r
            assert admin_states(sock) == {"web0": "enabled", "web1": "enabled", "web2": "drain"}

            # The same servers without the bad script: the proxy already
            # runs them, so nothing is left to do (and the drain stays).
            cfg.write_text(config(port, three, sock))
            r = ctl(sock, "reload")
            assert r.returncode == 0, r
            assert "no changes" in r.stdout, r.stdout
            assert admin_states(sock)["web2"] == "drain"
        except AssertionError:
            if halo is not None:
                for f in sorted(tmp.glob("halo-*.log")):
                    print(f.read_text())
            raise
        finally:
            if halo is not None:
                kill(halo)
            for w in webs:
                w.stop()
