"""notify_* hooks and [track_script] through the real binary.

Two halo LBs of a lab (tests/halolab.py), everything inside its network
namespaces. halo runs as root, spawned by the test (which needs its exit
status); hooks and track scripts run as the unprivileged user
`halo-hooktest` (created here if missing) and write what they saw into a
world-writable directory inside the lab directory (mode 0755). Who holds
the VIP is read from the kernel. Timings are not asserted: the waits are
generous upper bounds.
"""

import os
import pwd
import re
import signal
import subprocess

import pytest

from halolab import VIP, Lab, halo_bin, vrrp_toml, wait_for

LBS = {"lb1": "192.0.2.11", "lb2": "192.0.2.12"}
USER = "halo-hooktest"
# Upper bounds only; generous for a loaded 2-core machine.
T = 30


@pytest.fixture(scope="module", autouse=True)
def hook_user():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces and a test user")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
            check=True,
        )
    return USER


@pytest.fixture
def lab():
    with Lab("hk", lbs=2) as lab:
        yield lab


@pytest.fixture
def tmp(lab):
    # Scripts and what they record. The lab directory is mode 0755, so the
    # hook user can reach this; it must be able to write here.
    d = os.path.join(lab.dir, "hooks")
    os.mkdir(d)
    os.chmod(d, 0o1777)
    return d


def script(tmp, name, body):
    """An executable shell script readable by the hook user."""
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return path


def cfg(priority, extra="", pre=""):
    return pre + vrrp_toml(priority, extra=f'script_user = "{USER}"\n{extra}')


def start(lab, name, text, tmp):
    """halo run on an LB, as `halo lab start` would run it, but owned by the
    test (its exit status is checked); its output is lab.log(name)."""
    path = lab.write(name, "halo.toml", text)
    return lab.spawn(
        name,
        name,
        [halo_bin(), "run", "--config", path, "--socket", lab.path(name, "halo.sock")],
    )


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def toml_list(*argv):
    return "[" + ", ".join(f'"{a}"' for a in argv) + "]"


def transitions(lab, name):
    """The MASTER/BACKUP states `name`'s halo logged entering, in order:
    each one queues one notify_master or notify_backup run."""
    return re.findall(r"VI_1 \S+ -> (MASTER|BACKUP): ", lab.log(name))


def test_master_and_backup_hooks_run_as_the_script_user_with_env(lab, tmp):
    rec = script(
        tmp,
        "record.sh",
        'echo "$(id -un) $HALO_INSTANCE $HALO_STATE $HALO_VIPS $HALO_PRIORITY args=$*" >> "$1"\n'
        'echo "hook says hello"\n',
    )
    out = {n: os.path.join(tmp, f"{n}.out") for n in LBS}
    gen = {n: os.path.join(tmp, f"{n}.generic") for n in LBS}

    def hooks(n):
        return (
            f"notify_master = {toml_list(rec, out[n])}\n"
            f"notify_backup = {toml_list(rec, out[n])}\n"
            f"notify_stop = {toml_list(rec, out[n])}\n"
            f"notify = {toml_list(rec, gen[n])}\n"
        )

    start(lab, "lb1", cfg(101, hooks("lb1")), tmp)
    start(lab, "lb2", cfg(100, hooks("lb2")), tmp)
    wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 master")
    wait_for(lambda: f"{USER} VI_1 MASTER {VIP} 101" in read(out["lb1"]), T, "lb1 notify_master")
    wait_for(lambda: f"{USER} VI_1 BACKUP {VIP} 100" in read(out["lb2"]), T, "lb2 notify_backup")
    # The generic hook: keepalived's arguments appended to the argv.
    wait_for(
        lambda: f"{USER} VI_1 MASTER {VIP} 101 args={gen['lb1']} INSTANCE VI_1 MASTER 101" in read(gen["lb1"]),
        T,
        "lb1 generic notify with INSTANCE VI_1 MASTER 101",
    )
    # Output is logged line by line, with the exit status (notify_master ran
    # to its end before the generic hook of the same state started).
    log = lab.log("lb1")
    assert "VI_1 notify_master: hook says hello" in log, log
    assert "VI_1 notify_master: exit status 0" in log, log
    assert f"as {USER}" in log, log

    # Failover: lb2 runs notify_master; lb1 stopping runs notify_stop.
    # lb2 may have been master for a moment at start-up, before it heard
    # lb1 (INIT -> BACKUP -> MASTER -> BACKUP): its hooks run one after
    # the other, after the states. Settled means one record per state it
    # logged, the last BACKUP; only what comes after the stop counts.
    states = lambda: [line.split()[2] for line in read(out["lb2"]).splitlines()]

    def settled():
        logged = transitions(lab, "lb2")
        return logged[-1:] == ["BACKUP"] and states() == logged

    try:
        wait_for(settled, T, "lb2 settled as backup, every hook run")
    except AssertionError as e:
        raise AssertionError(f"{e}: hooks {states()}, log {transitions(lab, 'lb2')}") from None
    before = len(states())
    assert lab.signal("lb1", signal.SIGTERM, timeout=60) == 0, lab.log("lb1")
    assert f"{USER} VI_1 STOP {VIP}" in read(out["lb1"]), read(out["lb1"])
    wait_for(lambda: states()[before:] == ["MASTER"], T, "lb2 notify_master after failover")
    assert f"{USER} VI_1 MASTER {VIP} 100" in read(out["lb2"]).splitlines()[-1]
    # Hooks ran in the order of the states.
    assert states()[0] == "BACKUP", states()
    assert states() == transitions(lab, "lb2"), (states(), transitions(lab, "lb2"))
    # Every hook ran as the script user (the first word each one wrote).
    for n in LBS:
        for line in read(out[n]).splitlines():
            assert line.split()[0] == USER, line


def test_fault_hook_runs_when_the_cable_is_cut(lab, tmp):
    # The switch port goes down (`halo lab cut`): lb1 loses its carrier,
    # goes to FAULT and runs notify_fault, then the generic notify with
    # keepalived's arguments, as the script user; back up, it starts over.
    rec = script(
        tmp,
        "record.sh",
        'echo "$(id -un) $HALO_INSTANCE $HALO_STATE $HALO_VIPS $HALO_PRIORITY args=$*" >> "$1"\n',
    )
    out, gen = os.path.join(tmp, "fault.out"), os.path.join(tmp, "generic.out")
    hooks = f"notify_fault = {toml_list(rec, out)}\nnotify = {toml_list(rec, gen)}\n"
    start(lab, "lb1", cfg(101, hooks), tmp)
    start(lab, "lb2", cfg(100), tmp)
    wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 master")
    assert read(out) == "", read(out)
    lab.cut("lb1")
    try:
        wait_for(lambda: f"{USER} VI_1 FAULT {VIP} 101 args={out}" in read(out), T, "notify_fault on lb1")
        wait_for(lambda: f"{USER} VI_1 FAULT {VIP} 101 args={gen} INSTANCE VI_1 FAULT 101" in read(gen), T,
                 "the generic notify with INSTANCE VI_1 FAULT 101")
        wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb2"], T, "lb2 master, lb1 without the VIP")
        assert read(out).count("FAULT") == 1, read(out)
        lab.heal("lb1")
        wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 master again")
        wait_for(lambda: f"{USER} VI_1 MASTER {VIP} 101 args={gen} INSTANCE VI_1 MASTER 101" in read(gen), T,
                 "the generic notify for MASTER after the heal")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{read(out)}{read(gen)}{lab.log('lb1')}") from None


def test_hook_past_its_timeout_is_killed_and_does_not_delay_vrrp(lab, tmp):
    pidfile = os.path.join(tmp, "slow.pid")
    # The pid file is written before the line the test waits for.
    slow = script(
        tmp,
        "slow.sh",
        f'sleep 300 &\necho $! > {pidfile}\necho "slow hook starting"\nwait\n',
    )
    retry_out = os.path.join(tmp, "retries")
    flaky = script(tmp, "flaky.sh", f'echo try >> {retry_out}\nexit 1\n')
    # 10 s: long enough that lb2 surely joins and hears lb1 while the hook
    # still hangs, however slow the machine (that is checked below).
    start(
        lab,
        "lb1",
        cfg(101, f'notify_master = {toml_list(slow)}\nnotify_backup = {toml_list(flaky)}\nscript_timeout = "10s"\n'),
        tmp,
    )
    wait_for(lambda: "VI_1 notify_master: slow hook starting" in lab.log("lb1"), T, "lb1 master, hook hanging")
    pid = int(read(pidfile).strip())
    # lb2 joins while lb1's hook hangs: lb1's adverts must keep it backup.
    start(lab, "lb2", cfg(100), tmp)

    def lb2_hears_lb1():
        v = lab.vrrp("lb2")
        return v is not None and v["state"] == "BACKUP" and v["master"] == LBS["lb1"] \
            and v["adverts_received"] >= 10

    wait_for(lb2_hears_lb1, T, "lb2 backup, ten adverts heard from lb1")
    assert "timed out" not in lab.log("lb1"), "the hook timed out before lb2 had joined: nothing was shown"
    wait_for(lambda: "timed out after 10s, process group killed" in lab.log("lb1"), T, "the timeout to be logged")
    # The background sleep was in the hook's process group: killed too.
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or ") Z " in read(f"/proc/{pid}/stat"), T,
             "the hook's child to be killed")
    # While the hook hung, adverts went on: lb2 never took the VIP.
    assert lab.holders(["lb1", "lb2"], VIP) == ["lb1"]
    assert "-> MASTER" not in lab.log("lb2"), lab.log("lb2")
    # A failing notify_backup is not retried (retries are for notify_master):
    # it ran once, for lb1's INIT -> BACKUP, before notify_master.
    assert read(retry_out).count("try") == 1, read(retry_out)


def test_notify_master_is_retried(lab, tmp):
    count = os.path.join(tmp, "count")
    # Fails twice, then succeeds: the seed's "move the floating IP, retry".
    move = script(
        tmp,
        "move-ip.sh",
        f'echo x >> {count}\n[ "$(wc -l < {count})" -ge 3 ] || {{ echo "provider API busy" >&2; exit 1; }}\necho moved\n',
    )
    start(lab, "lb1", cfg(101, f"notify_master = {toml_list(move, '--to', 'me')}\nnotify_retries = 5\n"), tmp)
    wait_for(lambda: "VI_1 notify_master: moved" in lab.log("lb1"), 60, "the third attempt to succeed")
    log = lab.log("lb1")
    assert "provider API busy" in log
    assert "failed: exit status 1 (attempt 1 of 6)" in log, log
    assert read(count).count("x") == 3, "no attempts after the success"


def test_failing_track_script_moves_the_vip_and_recovers_after_rise(lab, tmp):
    flag = os.path.join(tmp, "healthy")
    open(flag, "w").close()
    pre = f"""
[track_script.chk]
command = {toml_list("/usr/bin/test", "-e", flag)}
interval = "200ms"
timeout = "1s"
rise = 3
fall = 2
weight = -10
user = "{USER}"
"""
    start(lab, "lb1", cfg(101, 'track = [{ script = "chk" }]', pre=pre), tmp)
    start(lab, "lb2", cfg(100), tmp)
    wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 master")
    # Only what is logged after each change counts (start-up says things
    # about the script too).
    mark = lab.log_mark("lb1")
    os.remove(flag)
    wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb2"], T, "lb2 to take over when the script fails")
    log = lab.log("lb1", since=mark)
    assert "track_script chk DOWN: 2 consecutive failures (exit status 1)" in log, log
    assert "91 = 101 - 10 (track script chk: failing)" in log, log
    mark = lab.log_mark("lb1")
    open(flag, "w").close()
    wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb1"], T, "lb1 to preempt back after rise")
    log = lab.log("lb1", since=mark)
    assert "track_script chk UP: 3 consecutive successes" in log, log


def test_track_script_that_cannot_run_counts_as_failure(lab, tmp):
    pre = f"""
[track_script.missing]
command = ["/nonexistent/halo-check"]
interval = "200ms"
weight = -10
user = "{USER}"

[track_script.sh127]
command = ["/bin/sh", "-c", "/nonexistent/halo-check"]
interval = "200ms"
weight = -10
user = "{USER}"
"""
    start(lab, "lb1", cfg(101, 'track = [{ script = "missing" }, { script = "sh127", weight = -5 }]', pre=pre), tmp)
    start(lab, "lb2", cfg(100), tmp)
    wait_for(lambda: "86 = 101 - 10 (track script missing: failing) - 5 (track script sh127: failing)" in lab.log("lb1"),
             T, "both scripts to count as failing")
    log = lab.log("lb1")
    assert "track_script missing DOWN" in log and "cannot be started" in log, log
    assert "track_script sh127 DOWN" in log and "exit status 127 (command not found)" in log, log
    wait_for(lambda: lab.holders(["lb1", "lb2"], VIP) == ["lb2"], T, "lb2 master (lb1 at 86)")


def test_missing_script_user_is_an_error_at_start(lab, tmp):
    text = cfg(101, 'notify_master = ["/bin/true"]').replace(f'script_user = "{USER}"', 'script_user = "halo-no-such-user"')
    p = start(lab, "lb1", text, tmp)
    rc = p.wait(timeout=60)
    assert rc != 0
    log = lab.log("lb1")
    assert 'user "halo-no-such-user" does not exist' in log, log
    assert VIP not in lab.addrs("lb1")
