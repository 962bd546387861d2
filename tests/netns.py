"""Network-namespace topologies for halo's multi-host tests.

Every topology lives entirely inside namespaces: the bridge sits in its own
"switch" namespace and each host's veth is created there with its peer moved
straight into the host namespace, so nothing is ever attached to the root
namespace. Addresses come from the documentation ranges only.

Use as a context manager; everything it made (namespaces, processes) is
removed on exit, also when a test fails:

    with Topology("vr") as t:
        t.switch()
        t.host("lb1", "192.0.2.11/24")
        t.spawn("lb1", [halo, "run", "--config", cfg])
"""

import os
import signal
import subprocess
import time

_counter = 0


def _exit_on_sigterm(*_):
    # SIGTERM (a timeout, a killed run) unwinds like an exception, so every
    # Topology's __exit__ still removes its namespaces and processes.
    raise SystemExit(143)


if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


def sh(*args, check=True, capture=True, timeout=30):
    r = subprocess.run(
        [str(a) for a in args],
        check=False,
        capture_output=capture,
        text=True,
        timeout=timeout,
    )
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def halo_bin():
    b = os.environ.get("HALO_BIN")
    if b:
        return b
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for p in ("target/release/halo", "target/debug/halo"):
        if os.path.exists(os.path.join(root, p)):
            return os.path.join(root, p)
    raise RuntimeError("halo binary not found: set HALO_BIN or cargo build")


class Topology:
    def __init__(self, tag):
        global _counter
        _counter += 1
        # Short, unique per process and topology: interface names are <= 15 chars.
        self.prefix = f"h{os.getpid() % 10000}{tag[:3]}{_counter}"
        self.namespaces = []
        self.procs = {}  # name -> Popen
        self.logs = {}
        self.sw = None

    # --- lifecycle ---

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        for name, p in list(self.procs.items()):
            self._kill(p)
        self.procs.clear()
        for ns in reversed(self.namespaces):
            # Processes we did not track (e.g. nginx daemonising) die with
            # their namespace only if killed; kill every pid inside it.
            r = sh("ip", "netns", "pids", ns, check=False)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()

    @staticmethod
    def _kill(p, sig=signal.SIGKILL):
        if p.poll() is None:
            try:
                p.send_signal(sig)
                p.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                p.kill()
                p.wait(timeout=5)

    # --- building ---

    def ns(self, name):
        return f"{self.prefix}-{name}"

    def _add_ns(self, name):
        ns = self.ns(name)
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        self.exec(name, "ip", "link", "set", "lo", "up")
        # No duplicate address detection: link-local addresses usable at once.
        for k in ("all", "default"):
            self.exec(name, "sysctl", "-qw", f"net.ipv6.conf.{k}.accept_dad=0", check=False)
        return ns

    def switch(self):
        """The bridge, in its own namespace."""
        self.sw = "sw"
        self._add_ns("sw")
        self.exec("sw", "ip", "link", "add", "br0", "type", "bridge")
        self.exec("sw", "ip", "link", "set", "br0", "up")
        return self

    def host(self, name, *addrs, ifname="eth0"):
        """A host namespace with one interface plugged into the switch."""
        ns = self._add_ns(name)
        port = f"p{len(self.namespaces)}{name}"[:15]
        self.exec("sw", "ip", "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns)
        self.exec("sw", "ip", "link", "set", port, "master", "br0")
        self.exec("sw", "ip", "link", "set", port, "up")
        for a in addrs:
            self.exec(name, "ip", "addr", "add", a, "dev", ifname)
        self.exec(name, "ip", "link", "set", ifname, "up")
        return ns

    def port_of(self, name):
        """The switch-side port name of a host (to cut its cable)."""
        r = self.exec("sw", "ip", "-o", "link", "show", "master", "br0")
        for line in r.stdout.splitlines():
            dev = line.split(":")[1].strip().split("@")[0]
            if dev.endswith(name) and dev.startswith("p"):
                return dev
        raise KeyError(name)

    # --- running ---

    def exec(self, name, *cmd, check=True, timeout=30):
        return sh("ip", "netns", "exec", self.ns(name), *cmd, check=check, timeout=timeout)

    def spawn(self, key, name, cmd, logdir=None, env=None):
        """Start a long-running process in namespace `name`, tracked as `key`."""
        log = open(os.path.join(logdir or "/tmp", f"{self.prefix}-{key}.log"), "w")
        self.logs[key] = log.name
        e = dict(os.environ)
        e.pop("NOTIFY_SOCKET", None)
        e.pop("JOURNAL_STREAM", None)
        if env:
            e.update(env)
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(name)] + [str(c) for c in cmd],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=e,
        )
        self.procs[key] = p
        return p

    def stop(self, key, sig=signal.SIGTERM):
        p = self.procs.pop(key)
        self._kill(p, sig)
        return p.returncode

    def log(self, key):
        with open(self.logs[key]) as f:
            return f.read()

    # --- observing ---

    def addrs(self, name, ifname="eth0"):
        r = self.exec(name, "ip", "-o", "addr", "show", "dev", ifname, check=False)
        out = []
        for line in r.stdout.splitlines():
            parts = line.split()
            if parts[2] in ("inet", "inet6"):
                out.append(parts[3].split("/")[0])
        return out

    def holders(self, names, vip):
        return [n for n in names if vip in self.addrs(n)]


def wait_for(pred, timeout, what, step=0.05):
    """Poll `pred` until true; raise with `what` after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)
