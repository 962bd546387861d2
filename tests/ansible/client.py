"""A bounded HTTP client loop against the VIP, run inside the controller
(the halo lab's client namespace) during the rolling upgrade:

    python3 client.py URL --stop-file F [--ready-file R] --max-requests N --max-seconds S

One new TCP connection per request (as a browser's first request), a short
pause between requests. It creates the ready file after its first successful
response (the test starts the upgrade only then), and stops at the stop file,
N requests or S seconds,
whichever comes first, then prints one JSON object: requests, ok, failed,
the first failures, which backends answered, the longest gap between two
successful responses and every gap over 0.5 s as [start, length] (seconds
from the loop's start).
"""

import argparse
import http.client
import json
import os
import re
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--stop-file", required=True)
    ap.add_argument("--ready-file")
    ap.add_argument("--max-requests", type=int, default=20000)
    ap.add_argument("--max-seconds", type=float, default=600)
    ap.add_argument("--pause", type=float, default=0.02)
    ap.add_argument("--timeout", type=float, default=5)
    a = ap.parse_args()
    u = urllib.parse.urlsplit(a.url)
    start = time.monotonic()
    last_ok = start
    longest_gap = 0.0
    longest_gap_at = 0.0
    n = ok = 0
    failures = []
    served = {}
    slow = []  # (start, length) of every gap over 0.5 s
    while n < a.max_requests and time.monotonic() - start < a.max_seconds and not os.path.exists(a.stop_file):
        n += 1
        t0 = time.monotonic()
        try:
            c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=a.timeout)
            c.request("GET", u.path or "/")
            r = c.getresponse()
            body = r.read().decode(errors="replace")
            c.close()
            m = re.search(r"served by (\S+)", body)
            if r.status != 200 or not m:
                raise RuntimeError(f"status {r.status}: {body[:80]!r}")
            ok += 1
            if ok == 1 and a.ready_file:
                open(a.ready_file, "w").close()
            served[m.group(1).strip("<>/p")] = served.get(m.group(1).strip("<>/p"), 0) + 1
            now = time.monotonic()
            if now - last_ok > 0.5 and len(slow) < 20:
                slow.append([round(last_ok - start, 3), round(now - last_ok, 3)])
            if now - last_ok > longest_gap:
                longest_gap, longest_gap_at = now - last_ok, last_ok - start
            last_ok = now
        except Exception as e:  # every failure counts; the loop goes on
            if len(failures) < 20:
                failures.append({"at": round(t0 - start, 3), "error": f"{type(e).__name__}: {e}"})
        time.sleep(a.pause)
    print(json.dumps({
        "requests": n, "ok": ok, "failed": n - ok, "failures": failures, "served": served,
        "seconds": round(time.monotonic() - start, 3),
        "longest_gap_s": round(longest_gap, 3), "longest_gap_at_s": round(longest_gap_at, 3),
        "gaps_over_half_s": slow,
    }))


if __name__ == "__main__":
    main()
