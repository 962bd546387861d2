"""`halo server drain|disable` reaches what a reload retired (issue 12,
"drain ≠ disable"): a reload hands new connections to a new generation,
but a keep-alive connection open before it is served once more by the old
one (its last request, answered with `Connection: close`), and a request
in flight before it finishes there. Admin changes made after the reload
must apply to those too:

- the retired connection's last request goes to no drained or disabled
  server;
- a request in flight from before the reload to a server disabled after
  it is cut; one to a server drained after it finishes whole.

Before, admin changes reached only the board of the generation that was
current, so both went on as if the server were still enabled. Both kinds
of reload are covered: one that only re-weights (the running workers take
the new config) and one that adds a listening address (a new generation of
workers starts beside the old one). Real nginx backends on loopback, halo
driven through `halo reload` and `halo server`; waits are bounded and
never asserted as timings."""

import socket

import pytest

from health.healthfix import free_port
from halolab import wait_for
from localfix import kill
from ops.test_drain_disable import BIG, T, conns_to, ctl, in_flight_to_web2, read_response_body, setup  # noqa: F401
from ops.test_reload_proxy import start_halo

# Keep-alive connections open across the reload: the old generation's round
# robin alternates, so before the fix some of their last requests went to
# web2 whatever the order.
KEEP = 4


def config(port, servers, sock, io, weight2=1, extra_bind=None):
    lines = ",\n".join(
        f'  {{ name = "{n}", address = "127.0.0.1:{p}", weight = {weight2 if n == "web2" else 1} }}'
        for n, p in servers)
    binds = ", ".join(f'"127.0.0.1:{p}"' for p in [port] + ([extra_bind] if extra_bind else []))
    # One worker: one pool and one round robin. No [health]: no probe
    # connections to count.
    return f"""
[global]
control_socket = "{sock}"
log_level = "warn"

[proxy.web]
bind = [{binds}]
workers = 1
io = "{io}"
servers = [
{lines},
]
# Long enough that no timeout ends a connection or the old generation
# during the test: what closes one is the drain or the disable.
timeouts = {{ keep_alive = "10m", client = "10m", server = "10m" }}
"""


def send_get(s):
    s.sendall(b"GET /who.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    return read_response_body(s)


@pytest.mark.parametrize("io", ["uring", "epoll"])
@pytest.mark.parametrize("reload", ["reweight", "new-bind"])
@pytest.mark.parametrize("verb", ["drain", "disable"])
def test_admin_change_after_reload_reaches_retired_connections(setup, verb, reload, io):
    tmp, webs = setup
    sock = str(tmp / "halo.sock")
    servers = [("web1", webs[0].port), ("web2", webs[1].port)]
    halo, port, log = start_halo(tmp, lambda p: config(p, servers, sock, io))
    conns = []
    try:
        # Before the reload: a request in flight to web2, and keep-alive
        # connections that each made one request (leaving idle pooled
        # connections to both servers).
        slow = in_flight_to_web2(port)
        seen = set()
        for _ in range(KEEP):
            s = socket.create_connection(("127.0.0.1", port), timeout=T)
            conns.append(s)
            status, close, body = send_get(s)
            assert status == 200 and not close
            seen.add(body.decode().strip())
        assert seen == {"web1", "web2"}, seen

        if reload == "reweight":
            text = config(port, servers, sock, io, weight2=2)
        else:
            text = config(port, servers, sock, io, extra_bind=free_port())
        (tmp / "halo.toml").write_text(text)
        r = ctl(sock, "reload")
        assert r.returncode == 0 and "proxy: 1 service(s) reloaded" in r.stdout, r

        r = ctl(sock, "server", verb, "web/web2")
        assert r.returncode == 0, r

        # Each retired connection's last request: served (and closed, the
        # connection being retired), never by web2.
        got = []
        for s in conns:
            status, close, body = send_get(s)
            got.append((status, close, body))
        assert got == [(200, True, b"web1\n")] * KEEP, got

        if verb == "drain":
            # The idle connections to web2 go, the one in flight stays and
            # its response arrives whole; then it closes too.
            wait_for(lambda: conns_to(webs[1].port) == 1, T, "only the in-flight connection to web2 left")
            assert slow.finish() == BIG
            wait_for(lambda: conns_to(webs[1].port) == 0, T, "no connection left to web2")
        else:
            # All go at once, the one in flight too: its response is cut.
            wait_for(lambda: conns_to(webs[1].port) == 0, T, "every connection to web2 to close")
            assert slow.finish() < BIG, "a disabled server's response went on"
        assert halo.poll() is None, log.read_text()
    finally:
        for s in conns:
            s.close()
        kill(halo, grace=20)
