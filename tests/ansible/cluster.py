"""Four Debian hosts (lb1, lb2, web1, web2) and an Ansible controller on a
`halo lab` network, for the ansible/ tests.

The network is the suite's one topology, `halo lab up --no-start --lbs 2
--backends 2` under its own lab name (tests/halolab.py's Lab), nothing in
the root namespace:

    netns halo-NAME-sw     : the lab's bridge, one port per node
    netns halo-NAME-client : 192.0.2.2/24: the controller (ansible-playbook,
                             ssh and the test clients)
    netns halo-NAME-lb1 ...: each host's eth0, 192.0.2.11/24 ... as the lab
                             sets it up, the example inventory's addresses

Nothing of the lab is started (no halo, no nginx from the lab): each host is
a systemd-nspawn -b container joining its node's namespace, with its own
systemd as PID 1, sshd, journald, and the daemons the roles install. Its
root is an overlayfs over the cached Debian tree
(tests/ansible/build-image.sh), so every run starts from a freshly installed
Debian. Its name and systemd-networkd file are written into the overlay
before it boots. A cable cut is `halo lab cut NODE`; after the containers
are stopped, `halo lab down` removes the namespaces.

Why nspawn and not qemu: on this machine /dev/kvm exists but a 64-bit guest
hangs in early boot under it, and TCG emulation took 112 s to bring four
guests to ssh. nspawn needs two things here: a tmpfs on /run/systemd/nspawn
(it keeps its propagation mounts there) and --register=no --keep-unit (there
is no systemd/machined on the host to register with).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
ANSIBLE_DIR = os.path.join(ROOT, "ansible")

sys.path.insert(0, os.path.dirname(HERE))
from halolab import CLIENT, LB, WEB, Lab  # noqa: E402

# The addresses of ansible/inventories/example.ini: the tests use that file as is.
HOSTS = {
    "lb1": "192.0.2.11",
    "lb2": "192.0.2.12",
    "web1": "192.0.2.21",
    "web2": "192.0.2.22",
}
# ... and the lab gives its nodes the same ones.
assert all({**LB, **WEB}[n] == a for n, a in HOSTS.items()), "halo lab addresses differ from the inventory"
# The lab's client namespace is the Ansible controller.
CONTROLLER = CLIENT
VIP = "192.0.2.100"


def run(args, check=True, timeout=120, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


class Cluster:
    def __init__(self, image_dir):
        self.image = image_dir
        # The network: lb1, lb2, web1, web2 and the client (the controller).
        # Only its namespaces and addresses are used; nothing is started in it.
        self.lab = Lab("ansible", lbs=2, backends=2)
        self.lab_up = False
        self.work = tempfile.mkdtemp(prefix="halo-ansible-", dir="/var/tmp")
        self.key = os.path.join(self.work, "id_ed25519")
        shutil.copy(os.path.join(image_dir, "id_ed25519"), self.key)
        os.chmod(self.key, 0o600)
        self.hosts = {}  # name -> Popen (systemd-nspawn), the current boot
        self.supervisors = {}  # name -> thread that boots it again on reboot
        self.closing = threading.Event()
        # Held while a supervisor boots a host again and while close() sets
        # `closing`: no boot can start after close() has taken the list.
        self.lock = threading.Lock()
        self.mounts = []
        self.nspawn_tmpfs = None  # the tmpfs this run mounted, if any

    # --- lifecycle ---------------------------------------------------------

    def __enter__(self):
        try:
            self.lab.__enter__()  # halo lab up --no-start
            self.lab_up = True
            for name in HOSTS:
                self._boot(name)
            self.wait_ssh()
            self.check_network()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        with self.lock:
            self.closing.set()
            procs = list(self.hosts.values())
        # SIGTERM makes nspawn shut the container's systemd down in order;
        # four at once on a loaded machine take a while.
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=30)
        for t in self.supervisors.values():
            t.join(timeout=30)
        for m in reversed(self.mounts):
            run(["umount", "-l", m], check=False)
        self.mounts = []
        if self.nspawn_tmpfs:
            # nspawn's propagation directories went with the containers.
            if run(["umount", self.nspawn_tmpfs], check=False).returncode != 0:
                run(["umount", "-l", self.nspawn_tmpfs], check=False)
            self.nspawn_tmpfs = None
        # Last, with the containers gone: halo lab down kills whatever is
        # still in the lab's namespaces and deletes them.
        if self.lab_up:
            self.lab_up = False
            self.lab.close()
        if os.environ.get("HALO_ANSIBLE_KEEP_WORK"):
            return
        shutil.rmtree(self.work, ignore_errors=True)

    def _boot(self, name):
        nsdir = "/run/systemd/nspawn"
        os.makedirs(nsdir, exist_ok=True)
        if run(["mountpoint", "-q", nsdir], check=False).returncode != 0:
            run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", nsdir])
            self.nspawn_tmpfs = nsdir
        base = os.path.join(self.work, name)
        upper, wk, merged = (os.path.join(base, d) for d in ("upper", "work", "root"))
        for d in (upper, wk, merged):
            os.makedirs(d)
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={self.image}/root,upperdir={upper},workdir={wk}", merged])
        self.mounts.append(merged)
        with open(os.path.join(merged, "etc/hostname"), "w") as f:
            f.write(name + "\n")
        # halo lab up already put this address on eth0 (no broadcast
        # address, link up). networkd adopts it as its own, once, when its
        # file says exactly that: with the default broadcast (192.0.2.255)
        # it asks the kernel to change the address, the kernel leaves an
        # existing address's broadcast alone, and networkd 252 retries in a
        # busy loop until the link fails. It drops the kernel's IPv6
        # link-local address (LinkLocalAddressing=no) and adds no route.
        with open(os.path.join(merged, "etc/systemd/network/10-eth0.network"), "w") as f:
            f.write("[Match]\nName=eth0\n\n[Network]\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n\n"
                    f"[Address]\nAddress={HOSTS[name]}/24\nBroadcast=no\n")
        args = ["systemd-nspawn", "--quiet", "--boot", "--directory", merged,
                "--machine", f"{self.lab.name}-{name}", "--hostname", name,
                "--register=no", "--keep-unit",
                # The lab's namespace for this node, its eth0 on the lab's switch.
                "--network-namespace-path", f"/run/netns/{self.lab.ns(name)}",
                # Its own network namespace: VIPs, raw VRRP sockets, nftables.
                "--capability=CAP_NET_ADMIN,CAP_NET_RAW"]
        log = open(os.path.join(self.work, name + ".console"), "a")
        # /proc/sys/net is the host's own namespace's: let it write there,
        # as on a real host (role common sets no sysctl today; earlier
        # versions set net.ipv4.ip_nonlocal_bind).
        env = dict(os.environ, SYSTEMD_NSPAWN_API_VFS_WRITABLE="network")

        def start():
            return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

        # A reboot inside the container makes nspawn exit with 133; boot it
        # again, as systemd-nspawn@.service does (RestartForceExitStatus=133),
        # so that reboot.yml works. At most 20 reboots per host.
        def supervise():
            for _ in range(20):
                rc = self.hosts[name].wait()
                with self.lock:
                    if rc != 133 or self.closing.is_set():
                        return
                    self.hosts[name] = start()

        self.hosts[name] = start()
        self.supervisors[name] = threading.Thread(target=supervise, daemon=True)
        self.supervisors[name].start()

    def console(self, name):
        try:
            with open(os.path.join(self.work, name + ".console"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def wait_ssh(self, names=None, timeout=900):
        """Until each host's systemd has finished booting and sshd answers.
        Four containers booting at once on a cold, loaded machine: a generous
        bound, and an ssh that takes too long is just another try."""
        names = list(names or HOSTS)
        deadline = time.monotonic() + timeout
        pending = set(names)
        while pending and time.monotonic() < deadline:
            for name in sorted(pending):
                if self.hosts[name].poll() is not None:
                    raise RuntimeError(f"systemd-nspawn for {name} exited:\n{self.console(name)}")
                try:
                    r = self.ssh(name, "systemctl is-system-running --wait >/dev/null; true", check=False, timeout=300)
                except subprocess.TimeoutExpired:
                    continue
                if r.returncode == 0:
                    pending.discard(name)
            if pending:
                time.sleep(1)
        if pending:
            raise RuntimeError("no ssh to " + ", ".join(sorted(pending)) + "\n" +
                               "\n".join(f"--- {n} console:\n{self.console(n)}" for n in sorted(pending)))

    def check_network(self, timeout=180):
        """Each host's eth0 has its one address from the lab, which the
        host's systemd-networkd adopted (configured, not failed)."""
        cmd = ("networkctl --no-pager --no-legend list eth0 | awk '{print $5}'; "
               "ip -o addr show dev eth0 | awk '{print $4}'")
        for name, addr in HOSTS.items():
            deadline = time.monotonic() + timeout
            while True:
                try:
                    out = self.ssh(name, cmd, check=False, timeout=60).stdout.split()
                except subprocess.TimeoutExpired:
                    out = []
                if out == ["configured", addr + "/24"]:
                    break
                if time.monotonic() > deadline or (out and out[0] in ("failed", "unmanaged")):
                    raise RuntimeError(f"{name}: eth0 not as the lab set it up (networkd state, addresses): {out}")
                time.sleep(0.5)

    # --- reaching the hosts ------------------------------------------------

    def in_client(self, args):
        """A command in the lab's client namespace, the controller."""
        return ["ip", "netns", "exec", self.lab.ns("client")] + [str(a) for a in args]

    def ssh_args(self):
        return ["-i", self.key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes"]

    def ssh(self, name, command, check=True, timeout=60):
        return run(self.in_client(["ssh"] + self.ssh_args() + ["root@" + HOSTS[name], command]),
                   check=check, timeout=timeout)

    def status(self, name):
        """halo status --json on an LB, parsed; None when halo (or the host,
        within 60 s) does not answer: callers poll."""
        try:
            r = self.ssh(name, "halo status --json", check=False)
        except subprocess.TimeoutExpired:
            return None
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)

    def vrrp_state(self, name):
        st = self.status(name)
        if st is None or not st.get("vrrp"):
            return None
        return st["vrrp"][0]["state"]

    def http_get(self, path="/", host=VIP, timeout=30):
        r = run(self.in_client(["curl", "-sS", "--max-time", str(timeout), f"http://{host}{path}"]),
                check=False, timeout=timeout + 10)
        return r.returncode, r.stdout

    def link(self, name, up):
        """Plug or pull the host's cable (its port on the switch):
        halo lab heal/cut NODE."""
        if up:
            self.lab.heal(name)
        else:
            self.lab.cut(name)

    # --- ansible -----------------------------------------------------------

    def playbook(self, playbook, extra=None, timeout=900):
        """ansible-playbook in the client namespace (the controller) against
        the example inventory. Returns (rc, output, recap{host: {ok, changed, ...}})."""
        env = dict(os.environ)
        env.update({
            "ANSIBLE_CONFIG": os.path.join(ANSIBLE_DIR, "ansible.cfg"),
            "ANSIBLE_PRIVATE_KEY_FILE": self.key,
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_SSH_ARGS": f"-o UserKnownHostsFile=/dev/null -o ControlMaster=auto -o ControlPersist=120s "
                                f"-o ControlPath={self.work}/cp-%C",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": os.path.join(self.work, "ansible-tmp"),
            "ANSIBLE_HOME": os.path.join(self.work, "ansible-home"),
            # SSH connection timeout (default 10 s): a loaded machine's
            # containers may take longer to accept a connection.
            "ANSIBLE_TIMEOUT": "60",
        })
        variables = {
            "ansible_user": "root",
            "common_apt_update": False,
            "common_ntp_servers": [CONTROLLER],
        }
        variables.update(extra or {})
        args = self.in_client(["ansible-playbook", "-i", os.path.join(ANSIBLE_DIR, "inventories", "example.ini"),
                               "-e", json.dumps(variables), os.path.join(ANSIBLE_DIR, playbook)])
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=ANSIBLE_DIR)
        out = r.stdout + r.stderr
        with open(os.path.join(self.work, "ansible.log"), "a") as f:
            f.write(f"\n===== {playbook} {variables}\n{out}")
        return r.returncode, out, parse_recap(out)


def parse_recap(out):
    recap = {}
    tail = out.split("PLAY RECAP", 1)[-1]
    for line in tail.splitlines():
        m = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
        if m:
            recap[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return recap
