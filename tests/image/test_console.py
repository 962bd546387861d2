"""Console.boot, the boot wait of test_boot, test_base_boot and test_raspi:
a guest that reports a stalled CPU (what CI's TCG guest printed while
modprobe's signature checks crawled, before its console fell silent) is
booted once more; a second stall or a real boot failure is not hidden.

The "VM" is a shell that writes its console file as qemu's -serial file:
would and then waits, so each case runs in a second."""

import subprocess
import time

import pytest

from conftest import Console, GuestStalled

LOCKUP = "[   88.164990] watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [modprobe:248]"
RCU = "[  195.133193] rcu: INFO: rcu_sched self-detected stall on CPU"
# A --base boot at load ~9 (session 8).
FROZEN = """[  143.357074] systemd[1]: Failed to fork off sandboxing environment for executing generators: Protocol error
[!!!!!!] Failed to start up manager.
[  143.402993] systemd[1]: Freezing execution."""


class ShellVm(Console):
    """Each start writes the next of `consoles` to the console file."""

    def __init__(self, tmp, consoles):
        super().__init__(tmp / "console.log", None, tmp / "qemu.stderr")
        self.consoles = list(consoles)
        self.starts = 0

    def start(self):
        text = self.consoles[self.starts]
        self.starts += 1
        self.proc = subprocess.Popen(["sh", "-c", 'printf "%s\\n" "$1" > "$2"; exec sleep 60', "sh", text, str(self.console)])


def boot(vm, timeout=20):
    try:
        return vm.boot(vm.start, r"HALO-READY lb1", timeout)
    finally:
        vm.stop()


def test_a_stalled_guest_is_booted_once_more_and_its_console_kept(tmp_path):
    vm = ShellVm(tmp_path, [f"Run /init\n{LOCKUP}", "Run /init\nHALO-READY lb1 halo 0.1.0"])
    t0 = time.monotonic()
    assert boot(vm).group(0) == "HALO-READY lb1"
    assert vm.starts == 2
    assert vm.started > t0
    assert LOCKUP in (tmp_path / "console-stalled.log").read_text()
    assert "HALO-READY" in vm.text()


def test_an_rcu_stall_counts_as_a_stall(tmp_path):
    vm = ShellVm(tmp_path, [RCU, "HALO-READY lb1"])
    boot(vm)
    assert vm.starts == 2


def test_a_frozen_pid_1_is_booted_once_more_then_fails_at_once(tmp_path):
    vm = ShellVm(tmp_path, [FROZEN, FROZEN])
    # "console shows": the fail pattern's message, not the timeout's.
    with pytest.raises(pytest.fail.Exception, match=r"console shows .*Freezing execution"):
        boot(vm, timeout=600)
    assert vm.starts == 2


def test_a_boot_that_reaches_its_line_is_not_started_again(tmp_path):
    # A lockup printed after the line waited for is the tests' business.
    vm = ShellVm(tmp_path, [f"HALO-READY lb1\n{LOCKUP}"])
    boot(vm)
    assert vm.starts == 1


def test_a_boot_failure_is_not_retried(tmp_path):
    vm = ShellVm(tmp_path, ["Kernel panic - not syncing: VFS", "HALO-READY lb1"])
    with pytest.raises(pytest.fail.Exception, match="Kernel panic"):
        boot(vm)
    assert vm.starts == 1


def test_a_second_stall_waits_out_the_timeout_and_fails(tmp_path):
    vm = ShellVm(tmp_path, [LOCKUP, LOCKUP])
    with pytest.raises(pytest.fail.Exception, match="no 'HALO-READY lb1' on the console after 3 s"):
        boot(vm, timeout=3)
    assert vm.starts == 2


def test_check_names_the_stall(tmp_path):
    vm = ShellVm(tmp_path, [f"booting\n{LOCKUP}\nmore"])
    vm.start()
    try:
        time.sleep(0.5)
        with pytest.raises(GuestStalled, match=r"soft lockup - CPU#0 stuck for 26s"):
            vm.check("never", (), [r"watchdog: BUG: soft lockup"])
    finally:
        vm.stop()
