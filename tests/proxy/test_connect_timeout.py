"""A backend that never answers a SYN: the connect timeout gives 503 and
the half-open socket is gone at once, with both I/O drivers.

The backend 198.51.100.1 is "on" the lab switch with a permanent neighbour
entry pointing at a MAC no interface has, so SYNs leave lb1 and nothing
ever answers: the kernel would retransmit them for about two minutes. A
connect that halo gave up on must not keep its socket (and descriptor)
that long; with io_uring this needs care, as tokio-uring does not cancel
an operation whose future is dropped.
"""

import os

import pytest

from halolab import LB, Lab, wait_for

DEAD = "198.51.100.1"


@pytest.fixture
def lab():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    with Lab("ct", lbs=1, backends=0) as lab:
        lab.exec("lb1", "ip", "route", "add", "198.51.100.0/24", "dev", "eth0")
        lab.exec("lb1", "ip", "neigh", "add", DEAD, "lladdr", "02:00:00:00:00:01",
                 "dev", "eth0", "nud", "permanent")
        yield lab


def syn_sent(lab):
    return lab.exec("lb1", "ss", "-Htn", "state", "syn-sent").stdout.strip()


@pytest.mark.parametrize("io", ["uring", "epoll"])
def test_connect_timeout_is_503_and_leaves_no_half_open_socket(lab, io):
    lab.run_halo("lb1", f"""
[proxy.web]
bind = ["0.0.0.0:80"]
io = "{io}"
retries = 0
servers = [{{ name = "dead", address = "{DEAD}:80" }}]
[proxy.web.timeouts]
connect = "1s"
""")
    url = f"http://{LB['lb1']}/"
    wait_for(lambda: lab.exec("client", "curl", "-s", "-o", "/dev/null", "-m", "1", url, check=False).returncode != 7,
             60, "halo listening on lb1")
    r = lab.exec("client", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "30", url, check=False)
    assert r.stdout == "503", (r.stdout, lab.log("lb1"))
    # The kernel would retry the SYN for ~2 minutes (127 s); halo closes it
    # when it gives up. The bound leaves room for a loaded machine and is
    # still far below what a leaked connect would take.
    try:
        wait_for(lambda: syn_sent(lab) == "", 20, "no SYN-SENT socket left on lb1")
    except AssertionError:
        raise AssertionError(f"half-open sockets left after the 503:\n{syn_sent(lab)}") from None
