"""`halo import` over real-world configs: ../shared/realconf (170
keepalived.conf and haproxy.cfg files from public repositories, plus mangled
and edge-case inputs its run.sh generates) must import with no crash, no
timeout (10 s each), no output that `halo check` refuses, and no keepalived
`$VARIABLE` left unexpanded in a value.

run.sh is the corpus's own classifier (read-only, shared with the lead); it
exits 1 on a crash, timeout or check failure. Its summary line also counts
the `$` values, which this test requires to be 0 as well.
"""

import os
import re
import subprocess

from test_import import ROOT, halo  # noqa: F401 (pytest fixture)

REALCONF = os.path.join(os.path.dirname(ROOT), "shared", "realconf")
SUMMARY = re.compile(
    r"^realconf: .* check-fail (?P<cf>\d+) .* crash (?P<crash>\d+), timeout (?P<to>\d+); "
    r"suspect \$values (?P<sus>\d+);"
)


def test_every_real_world_config_imports_to_what_halo_check_accepts(halo):  # noqa: F811
    run = os.path.join(REALCONF, "run.sh")
    assert os.path.exists(run), f"{run} missing: the corpus is at ../shared/realconf from the repository"
    # Bounded: 240 imports and checks, each killed by run.sh after 10 s.
    r = subprocess.run(["bash", run, halo], capture_output=True, text=True, timeout=1800)
    summary = [m for m in map(SUMMARY.match, r.stdout.splitlines()) if m]
    assert summary, f"no summary line:\n{r.stdout[-3000:]}\n{r.stderr[-2000:]}"
    s = summary[-1]
    defects = [l for l in r.stdout.splitlines() if l.startswith(("CRASH", "TIMEOUT", "CHECK_FAIL", "SUSPECT"))]
    assert (s["crash"], s["to"], s["cf"], s["sus"]) == ("0", "0", "0", "0"), "\n".join(defects)
    assert r.returncode == 0, r.stdout[-3000:]
