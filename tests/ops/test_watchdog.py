"""The systemd watchdog protocol, without systemd: halo runs as systemd
would run it with `WatchdogSec=2s` (NOTIFY_SOCKET and WATCHDOG_USEC set),
and the test is the notify socket, counting `WATCHDOG=1` datagrams.

- halo pings while every part goes round;
- a reload that takes a while (a notify_stop hook of 3 s while an instance
  restarts) does not hold the pings back;
- one stuck thread (a proxy worker, the health checker), and only that
  thread, stopped with ptrace while the rest of halo runs, stops the pings
  and halo says which part; released, the pings come back.

The restart by systemd itself (a halo frozen with SIGSTOP) is tested under
a real systemd in tests/ansible/test_cluster.py.
"""

import ctypes
import os
import signal
import socket
import threading
import time

import pytest

from halolab import VIP, WEB, Lab, halo_bin, vrrp_toml, wait_for

# Upper bounds only; generous for a loaded 2-core machine.
T = 60

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long


def ptrace(req, tid):
    if _libc.ptrace(req, tid, None, None) == -1:
        e = ctypes.get_errno()
        raise OSError(e, f"ptrace({req:#x}, {tid}): {os.strerror(e)}")


class Frozen:
    """One thread of a process stopped (PTRACE_SEIZE + PTRACE_INTERRUPT
    stop only the thread given, unlike SIGSTOP), until the block ends."""

    def __init__(self, tid):
        self.tid = tid

    def __enter__(self):
        ptrace(PTRACE_SEIZE, self.tid)
        ptrace(PTRACE_INTERRUPT, self.tid)
        os.waitpid(self.tid, WALL)
        return self

    def __exit__(self, *exc):
        ptrace(PTRACE_DETACH, self.tid)
        return False


def thread_id(pid, comm):
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            if f.read().strip() == comm:
                return int(tid)
    raise AssertionError(f"halo has no thread {comm!r}")


class NotifySocket:
    """systemd's side of sd_notify: a datagram socket that records what
    arrives, with the wall-clock time of arrival."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.msgs = []  # (time.time(), text)
        self.stop = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.msgs.append((time.time(), data.decode(errors="replace")))

    def pings(self, since=0.0, until=float("inf")):
        return [t for t, m in list(self.msgs) if "WATCHDOG=1" in m.split("\n") and since <= t <= until]

    def close(self):
        self.stop = True
        self.thread.join(timeout=5)
        self.sock.close()


def conf(lab, interval):
    hook = (f'notify_stop = ["/bin/sh", "-c", "touch {lab.path("lb1", "hook.start")}; sleep 3; '
            f'touch {lab.path("lb1", "hook.end")}"]\nscript_user = "root"')
    return vrrp_toml(150, interval=interval, extra=hook) + f"""
[proxy.web]
bind = ["{VIP}:80"]
workers = 2
servers = [{{ name = "web1", address = "{WEB['web1']}:80" }}]

[proxy.web.health]
path = "/health"
interval = "200ms"
timeout = "100ms"
"""


@pytest.fixture
def watched():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces and ptrace")
    with Lab("wdg", lbs=1, backends=1) as lab:
        lab.start("web1")
        lab.write("lb1", "halo.toml", conf(lab, "100ms"))
        notify = NotifySocket(lab.path("lb1", "notify.sock"))
        try:
            p = lab.spawn("halo", "lb1", [halo_bin(), "run", "--config", lab.path("lb1", "halo.toml"),
                                          "--socket", lab.path("lb1", "halo.sock")],
                          env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "2000000"})
            wait_for(lambda: any("READY=1" in m for _, m in notify.msgs), T, "READY=1")
            wait_for(lambda: len(notify.pings()) >= 3, T, "the first pings")
            wait_for(lambda: lab.holders(["lb1"], VIP) == ["lb1"], T, "lb1 master")
            yield lab, p.pid, notify
        finally:
            notify.close()


@pytest.mark.parametrize("comm,part", [("halo-web-0", "proxy web worker 0"), ("halo-health", "health checker")])
def test_one_stuck_thread_stops_the_pings(watched, comm, part):
    lab, pid, notify = watched
    tid = thread_id(pid, comm)
    mark = lab.log_mark("halo")

    def adverts(n):
        """`n` more adverts sent by the VRRP master: the rest of halo runs
        on (20 at 100 ms are two seconds, four of the pinger's looks)."""
        start = lab.vrrp("lb1")["adverts_sent"]
        wait_for(lambda: lab.vrrp("lb1")["adverts_sent"] >= start + n, T, f"{n} more adverts")

    with Frozen(tid):
        # A ping already on its way when the thread stopped may still come.
        adverts(20)
        held = len(notify.pings())
        adverts(20)
        assert len(notify.pings()) == held, "pinged while a part was stuck"
        assert f"no progress since the last ping: {part}" in lab.log("halo", since=mark)
    wait_for(lambda: len(notify.pings()) > held, T, "pings again once the thread runs")
    assert "every part makes progress again" in lab.log("halo", since=mark)
    assert "watchdog: systemd expects a ping every 2s" in lab.log("halo")


def test_a_slow_reload_does_not_hold_the_pings_back(watched):
    lab, pid, notify = watched
    # New timers restart the instance: its notify_stop hook (3 s) runs
    # inside the reload.
    lab.write("lb1", "halo.toml", conf(lab, "200ms"))
    os.kill(pid, signal.SIGHUP)
    start_f, end_f = lab.path("lb1", "hook.start"), lab.path("lb1", "hook.end")
    wait_for(lambda: os.path.exists(end_f), T, "the notify_stop hook to end")
    wait_for(lambda: "vrrp VI_1: restarted" in lab.log("halo"), T, "the reload to finish")
    during = notify.pings(os.path.getmtime(start_f), os.path.getmtime(end_f))
    assert len(during) >= 2, (len(during), notify.msgs[-20:])
    wait_for(lambda: lab.holders(["lb1"], VIP) == ["lb1"], T, "lb1 master after the reload")
