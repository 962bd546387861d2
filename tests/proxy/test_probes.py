"""The differential probe suite (issue 13): every raw request in
probes.PROBES goes to halo (on each I/O driver) and, where Debian's
HAProxy is installed, to HAProxy, both in front of a RecordingBackend.
halo must answer exactly as probes.EXPECT says and its server must get
exactly the bytes listed there (nothing at all for a refused request or
a request smuggled behind it); HAProxy's first answer is compared with
what was observed, and docs/proxy.md must show the current table.

Run `python3 tests/proxy/probes.py` to see what both proxies do now.
"""

import os

import pytest

from probes import EXPECT, HAPROXY, PROBES, HAProxy, markdown, run_probe
from proxyfix import RecordingBackend

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs", "proxy.md")


def test_every_probe_has_an_expectation():
    assert sorted(EXPECT) == sorted(name for name, _ in PROBES)


def test_halo_answers_each_probe_as_the_table_says(make_halo, recorder):
    rb = recorder()
    # No X-Forwarded-For & co, so the table holds the bytes as forwarded.
    h = make_halo([dict(name="s1", address=rb.address)], forwardfor=False)
    wrong = []
    for name, request in PROBES:
        want_st, want_seen, _, _ = EXPECT[name]
        want_seen = [r.replace(b"{server}", rb.address.encode()) for r in want_seen]
        st, seen = run_probe(h.port, rb, request)
        if (st, seen) != (want_st, want_seen):
            wrong.append(f"{name}: got {st} {seen}, want {want_st} {want_seen}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.skipif(not os.path.exists(HAPROXY), reason="Debian's haproxy is not installed")
def test_haproxy_answers_each_probe_as_observed():
    rb = RecordingBackend()
    ha = HAProxy(rb.port)
    try:
        wrong = []
        for name, request in PROBES:
            _, _, want_st, want_n = EXPECT[name]
            st, seen = run_probe(ha.port, rb, request)
            if st[:1] != want_st[:1] or bool(seen) != bool(want_n):
                wrong.append(f"{name}: got {st} ({len(seen)} forwarded), want {want_st[:1]} ({want_n})")
        assert not wrong, "\n".join(wrong)
    finally:
        ha.stop()
        rb.close()


def test_docs_show_the_probe_table():
    with open(DOCS) as f:
        assert markdown() in f.read(), "docs/proxy.md: paste the table `python3 -c 'import probes; print(probes.markdown())'` prints"
