"""Active-active: three LBs, three VIPs, each VIP with its own master.

The lab is `halo lab up --lbs 3 --vips 3 --backends 2` as a student gets
it (the generated halo.toml files, not the test's own): VIP i
(192.0.2.99+i, instance VI_i, vrid 50+i) is mastered by lb i and backed up
by the next LBs in turn (VIP 1: lb1, lb2, lb3; VIP 2: lb2, lb3, lb1; VIP 3:
lb3, lb1, lb2). A client loop sends requests through all three VIPs while
lb1 is killed with SIGKILL: VIP 1 must move to lb2 (the next in its order,
not lb3), VIPs 2 and 3 must not move at all, and not one request through
them may fail.

Nothing here waits by sleeping: holders are polled (the kernel's view) and
"did not move" is checked at every poll over a window counted in adverts
heard, plus each instance's transition counter. Timings are printed for
docs/scale.md, never asserted.
"""

import json
import os
import time
from collections import Counter

import pytest

from halolab import LB, Lab, always_until, wait_for

T = 60
LBS = ["lb1", "lb2", "lb3"]
VIPS = {f"VI_{i}": f"192.0.2.{99 + i}" for i in (1, 2, 3)}

# The client's loop: GET / through every VIP in turn, a new connection each
# (what a browser resolving the round-robin name gets), one line per request.
# Bounded in count and time; stops early when the stop file appears.
CLIENT = r"""
import http.client, os, sys, time
vips, stop = sys.argv[1].split(","), sys.argv[2]
max_rounds, end = int(sys.argv[3]), time.monotonic() + float(sys.argv[4])
r = 0
while r < max_rounds and time.monotonic() < end and not os.path.exists(stop):
    for v in vips:
        t = time.monotonic()
        try:
            # Generous: a slow answer on a loaded machine is not a failure.
            c = http.client.HTTPConnection(v, 80, timeout=5)
            c.request("GET", "/")
            resp = c.getresponse()
            resp.read()
            c.close()
            ok = resp.status == 200
            why = resp.status
        except Exception as e:
            ok, why = False, type(e).__name__
        print(v, "ok" if ok else "fail", f"{t:.3f}", why, flush=True)
    r += 1
    time.sleep(0.02)
print("done", r, flush=True)
"""


def instance(t, node, name):
    """VRRP instance `name`'s status on `node`, or None while it does not answer."""
    s = t.status(node)
    if not s:
        return None
    return next((v for v in s.get("vrrp", []) if v["name"] == name), None)


def requests(t):
    """The client's log so far: {vip: [(ok, t, why)]}."""
    out = {v: [] for v in VIPS.values()}
    for line in t.log("aa").splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] in out:
            out[parts[0]].append((parts[1] == "ok", float(parts[2]), parts[3]))
    return out


def vips_answer(t):
    r = [t.exec("client", "curl", "-sf", "-m", "2", f"http://{v}/", check=False) for v in VIPS.values()]
    return all(x.returncode == 0 for x in r)


@pytest.fixture
def aa():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    with Lab("aa", lbs=3, backends=2, vips=3) as lab:
        yield lab


def test_kill_one_of_three_lbs_moves_only_its_vip_and_the_others_serve_on(aa):
    t = aa
    for node in ["web1", "web2", *LBS]:
        t.start(node)
    # Each VIP on its own master, alone.
    for i, (name, vip) in enumerate(VIPS.items(), 1):
        wait_for(lambda vip=vip, i=i: t.holders(LBS, vip) == [f"lb{i}"], T, f"lb{i} the only holder of {vip}")
    # Every backup has heard its master (the election is over everywhere).
    for name in VIPS:
        master = f"lb{name[-1]}"
        for node in LBS:
            if node != master:
                wait_for(lambda node=node, name=name, master=master: (
                    (v := instance(t, node, name)) is not None and v["state"] == "BACKUP"
                    and v["master"] == LB[master]), T, f"{node} {name} backup of {master}")
    wait_for(lambda: vips_answer(t), T, "all three VIPs to answer through the proxy")

    stop = t.path("client", "aa.stop")
    t.spawn("aa", "client", ["python3", "-c", CLIENT, ",".join(VIPS.values()), stop, "20000", "300"])
    wait_for(lambda: all(len(r) >= 20 for r in requests(t).values()), T, "the client loop to run")

    untouched = [("VI_2", "lb2"), ("VI_3", "lb3")]
    transitions = {(n, node): instance(t, node, n)["transitions"] for n in VIPS for node in LBS}

    def others_stay():
        return (t.holders(LBS, VIPS["VI_2"]) == ["lb2"] and t.holders(LBS, VIPS["VI_3"]) == ["lb3"])

    def heard(node, name):
        v = instance(t, node, name)
        return v["adverts_received"] if v else -1

    t0 = time.monotonic()
    t.kill("lb1")
    # kill -9 leaves lb1's addresses behind (stale): only the living are asked.
    moved = {}

    def vip1_moved():
        if t.holders(["lb2", "lb3"], VIPS["VI_1"]) == ["lb2"]:
            moved.setdefault("at", time.monotonic())
        return "at" in moved

    always_until(others_stay, vip1_moved, T, "VIP 2 on lb2 only and VIP 3 on lb3 only while VIP 1 moves")
    failover = moved["at"] - t0
    # Then ten more adverts of each untouched instance heard by a backup
    # (lb3 hears VI_2, lb2 hears VI_3): still nothing moves.
    start = {n: heard(b, n) for n, b in [("VI_2", "lb3"), ("VI_3", "lb2")]}
    always_until(others_stay, lambda: heard("lb3", "VI_2") >= start["VI_2"] + 10
                 and heard("lb2", "VI_3") >= start["VI_3"] + 10, T,
                 "VIP 2 and VIP 3 stay while ten more of their adverts are heard")
    # VIP 1 went to lb2, the next in its order: lb3 stays its backup.
    assert t.holders(["lb2", "lb3"], VIPS["VI_1"]) == ["lb2"]
    assert instance(t, "lb3", "VI_1")["state"] == "BACKUP"
    assert instance(t, "lb3", "VI_1")["master"] == LB["lb2"]
    # The untouched instances never changed state anywhere they still run.
    for name, master in untouched:
        for node in ["lb2", "lb3"]:
            assert instance(t, node, name)["transitions"] == transitions[(name, node)], (name, node)

    # Traffic through VIP 1 flows again (through lb2): twenty good answers
    # after the move.
    def vip1_back():
        after = [ok for ok, at, _ in requests(t)[VIPS["VI_1"]] if at > moved["at"]]
        return len(after) >= 20 and all(after[-20:])

    wait_for(vip1_back, T, "requests through VIP 1 to succeed again")
    with open(stop, "w"):
        pass
    p, _ = t.procs["aa"]
    p.wait(timeout=T)
    assert p.returncode == 0, t.log("aa")

    reqs = requests(t)
    for name, _ in untouched:
        got = reqs[VIPS[name]]
        failed = [r for r in got if not r[0]]
        assert got and not failed, f"{name}: {len(failed)} of {len(got)} requests failed: {failed[:5]}"
    v1 = reqs[VIPS["VI_1"]]
    fails = [at for ok, at, _ in v1 if not ok]
    outage = (max(fails) - min(fails)) if fails else 0.0
    # For docs/scale.md (run with -s to see it); not asserted.
    print(json.dumps({
        "kill_to_vip1_on_lb2_s": round(failover, 2),
        "vip1_failed_requests": len(fails),
        "vip1_outage_s": round(outage, 2),
        "vip1_failures_by_kind": dict(Counter(w for ok, _, w in v1 if not ok)),
        "requests": {v: len(r) for v, r in reqs.items()},
    }))
