"""The test suite's one way to build a topology: `halo lab`.

Every multi-host test (failover, backend failure, keepalived interop,
operations, hooks, benchmarks) gets its network from the same `halo lab`
command students use: a switch namespace with the bridge, lb1..lbN,
web1..webM running nginx, and a client, addresses from 192.0.2.0/24 (and
2001:db8::/64 with ipv6=True), nothing in the root namespace. A test lab
has its own name (namespaces halo-NAME-*) and directory, so it never
touches a student's lab or another test's.

The lab is built with `--no-start`: the test writes the halo.toml or
keepalived.conf it needs into the node's directory, then starts the node
with `halo lab start`. Leaving the `with` block runs `halo lab down`,
which kills everything inside the lab's namespaces and deletes them, also
when the test failed or was interrupted (SIGTERM unwinds like an exception):

    with Lab("vr", lbs=2) as lab:
        lab.run_halo("lb1", text)
        wait_for(lambda: lab.holders(["lb1"], VIP) == ["lb1"], 10, "lb1 master")
        lab.kill("lb1")
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

from localfix import halo_bin

VIP = "192.0.2.100"
LB = {f"lb{n}": f"192.0.2.{10 + n}" for n in range(1, 10)}
WEB = {f"web{n}": f"192.0.2.{20 + n}" for n in range(1, 10)}
CLIENT = "192.0.2.2"

_counter = 0


def _exit_on_sigterm(*_):
    # SIGTERM (a timeout, a killed run) unwinds like an exception, so every
    # Lab's __exit__ still takes its lab down.
    raise SystemExit(143)


if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


def vrrp_toml(priority, interval="100ms", extra="", vips=(VIP + "/24",), version=3):
    """The virtual router the tests run on the lab's LBs: VI_1 on eth0,
    vrid 51 (the lab's own), holding `vips`; `extra` adds keys to it."""
    vip_list = ", ".join(f'"{v}"' for v in vips)
    return f"""
[vrrp.VI_1]
interface = "eth0"
vrid = 51
version = {version}
priority = {priority}
advert_interval = "{interval}"
virtual_ips = [{vip_list}]
{extra}
"""


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


def always_until(pred, until, timeout, what, step=0.05):
    """`pred` must hold at every poll until `until` becomes true (within
    `timeout` seconds). For "nothing changes": the window is a count of
    what must have happened meanwhile (adverts heard, say), not a sleep,
    so a slow machine lengthens it instead of emptying it."""
    end = time.monotonic() + timeout
    while True:
        if not pred():
            raise AssertionError(f"no longer true: {what}")
        if until():
            # Once more: the state after the window is what is checked.
            if not pred():
                raise AssertionError(f"no longer true: {what}")
            return
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s: {what}, waiting for the end of the window")
        time.sleep(step)


def alive(pid):
    """Running, not a zombie waiting for its parent to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


class Lab:
    def __init__(self, tag, lbs=2, backends=0, peer=None, ipv6=False, vips=1, l4=None):
        global _counter
        _counter += 1
        # Short and unique per process and lab: it goes into namespace names
        # (at most 12 characters). Letters, then the pid in exactly five
        # digits, then the counter: two processes can never make the same
        # name (unpadded, pid 1234 lab 56 and pid 12345 lab 6 could).
        tag = "".join(c for c in tag.lower() if "a" <= c <= "z")[:3] or "t"
        self.name = f"{tag}{os.getpid() % 100000:05d}{_counter}"
        assert len(self.name) <= 12, self.name
        self.lbs, self.backends, self.peer, self.ipv6 = lbs, backends, peer, ipv6
        # `up --vips M`: the generated configs hold M instances (active-active).
        self.vips = vips
        # `up --l4 dr|nat`: the generated configs balance in the kernel.
        self.l4 = l4
        self.dir = None
        self.procs = {}  # key -> (Popen, log path)

    # --- lifecycle ---

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix=f"halo-lab-{self.name}-")
        # The lab's own processes run as root; tests that run halo as
        # another user need to reach the files in here.
        os.chmod(self.dir, 0o755)
        args = ["up", "--no-start", "--lbs", str(self.lbs), "--backends", str(self.backends)]
        if self.peer:
            args += ["--peer", self.peer]
        if self.ipv6:
            args.append("--ipv6")
        if self.vips != 1:
            args += ["--vips", str(self.vips)]
        if self.l4:
            args += ["--l4", self.l4]
        try:
            self.lab(*args)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        # Every step runs even if one before it failed: a process that does
        # not die in time must not leave the namespaces behind.
        try:
            for p, _ in self.procs.values():
                if p.poll() is None:
                    p.kill()
                    try:
                        p.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        pass  # inside the lab: `down` kills it
        finally:
            self.procs.clear()
            if self.dir:
                try:
                    self._down()
                finally:
                    shutil.rmtree(self.dir, ignore_errors=True)
                    self.dir = None

    def _down(self):
        """`halo lab down`: kills whatever is left inside the namespaces
        and deletes them. Tried twice; a lab left behind is an error."""
        why = ""
        for _ in range(2):
            try:
                r = self.lab("down", check=False, timeout=120)
            except subprocess.TimeoutExpired:
                why = "timed out"
                continue
            if r.returncode == 0:
                return
            why = f"exit {r.returncode}: {r.stdout}{r.stderr}"
        raise RuntimeError(f"halo lab down --name {self.name}: {why}")

    # --- the halo lab command line ---

    def lab(self, *args, check=True, timeout=120):
        """`halo lab ARGS --name NAME --dir DIR`."""
        cmd = [halo_bin(), "lab", *map(str, args), "--name", self.name, "--dir", self.dir]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def ns(self, node):
        """A node's namespace, or the switch's for `switch`."""
        return f"halo-{self.name}-{'sw' if node == 'switch' else node}"

    def path(self, node, name):
        return os.path.join(self.dir, node, name)

    def write(self, node, name, text, mode=0o644):
        path = self.path(node, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def run_halo(self, node, text):
        """Write the node's halo.toml and start it with `halo lab start`."""
        self.write(node, "halo.toml", text)
        self.start(node)

    def start(self, node):
        return self.lab("start", node)

    def stop(self, node):
        """SIGTERM the node's daemons and wait until they are gone."""
        return self.lab("stop", node)

    def kill(self, node):
        return self.lab("kill", node)

    def cut(self, target):
        """Unplug a node's cable at the switch; `lbs`: partition the LBs."""
        return self.lab("cut", target)

    def heal(self, target):
        return self.lab("heal", target)

    def reload(self, node):
        return self.lab("reload", node)

    def log(self, node, name="halo", since=0):
        """DIR/NODE/NAME.log (halo, keepalived, error, access), or a spawned
        process's log when `node` is its key. `since`: from that offset on,
        a mark taken with `log_mark`, so a check reads only what was logged
        after an action, not a line from an earlier phase of the test (a
        restarted daemon appends to the same log)."""
        if node in self.procs:
            path = self.procs[node][1]
        else:
            path = self.path(node, f"{name}.log")
        try:
            with open(path, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_mark(self, node, name="halo"):
        """Where the log ends now: `log(node, since=mark)` reads what comes after."""
        if node in self.procs:
            path = self.procs[node][1]
        else:
            path = self.path(node, f"{name}.log")
        try:
            return os.path.getsize(path)
        except FileNotFoundError:
            return 0

    # --- commands inside a node ---

    def _exec_cmd(self, node, cmd):
        return [halo_bin(), "lab", "exec", node, "--name", self.name, "--dir", self.dir,
                "--", *map(str, cmd)]

    def exec(self, node, *cmd, check=True, timeout=30, input=None):
        """`halo lab exec NODE -- CMD` to completion."""
        r = subprocess.run(self._exec_cmd(node, cmd), capture_output=True, text=True,
                           timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise RuntimeError(f"{node}: {' '.join(map(str, cmd))}: exit {r.returncode}: {r.stderr.strip()}")
        return r

    def spawn(self, key, node, cmd, env=None, stdout=None):
        """A long-running process in a node, tracked as `key`. `halo lab
        exec` execs into the command, so the Popen's pid, signals and exit
        status are the command's own. Output goes to DIR/NODE/KEY.out
        unless `stdout` is given (subprocess.PIPE)."""
        log = self.path(node, f"{key}.out")
        e = dict(os.environ)
        e.pop("NOTIFY_SOCKET", None)
        e.pop("JOURNAL_STREAM", None)
        if env:
            e.update(env)
        if stdout is None:
            with open(log, "w") as out:
                p = subprocess.Popen(self._exec_cmd(node, cmd), stdout=out, stderr=subprocess.STDOUT, env=e)
        else:
            p = subprocess.Popen(self._exec_cmd(node, cmd), stdout=stdout, text=True, env=e)
        self.procs[key] = (p, log)
        return p

    def signal(self, key, sig=signal.SIGTERM, timeout=10):
        """Signal a spawned process and wait for it; its exit status."""
        p, _ = self.procs[key]
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        return p.returncode

    def status(self, node):
        """`halo status --json` of the halo on `node` (its control socket
        DIR/NODE/halo.sock, as `halo lab start` and the tests start it), or
        None while it does not answer."""
        r = subprocess.run([halo_bin(), "status", "--json", "--socket", self.path(node, "halo.sock")],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)

    def vrrp(self, node):
        """The first VRRP instance's status on `node`, or None."""
        s = self.status(node)
        return s["vrrp"][0] if s and s.get("vrrp") else None

    # --- observing (the kernel's view, not halo's) ---

    def addrs(self, node, ifname="eth0"):
        r = subprocess.run(["ip", "-n", self.ns(node), "-o", "addr", "show", "dev", ifname],
                           capture_output=True, text=True)
        out = []
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) > 3 and parts[2] in ("inet", "inet6"):
                out.append(parts[3].split("/")[0])
        return out

    def holders(self, nodes, vip=VIP):
        return [n for n in nodes if vip in self.addrs(n)]

    def mac(self, node):
        return self.exec(node, "cat", "/sys/class/net/eth0/address").stdout.strip()


def lab_factory(prefix):
    """The body of a `lab_of` pytest fixture: `make(lbs=2, **kw)` builds a
    lab named after `prefix`; every lab made is taken down after the test,
    each even if taking down another one failed. Skips without root."""
    if os.geteuid() != 0:
        import pytest

        pytest.skip("needs root for network namespaces")
    labs = []

    def make(lbs=2, **kw):
        lab = Lab(prefix, lbs=lbs, **kw).__enter__()
        labs.append(lab)
        return lab

    yield make
    errors = []
    for lab in labs:
        try:
            lab.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    if errors:
        raise errors[0]
