#!/usr/bin/env python3
"""Benchmark (not a test): resident memory per idle client connection of
halo's HTTP proxy, on each I/O driver.

One halo (one worker) on loopback in front of one nginx-light backend
serving a 1 KiB page. For each driver: VmRSS of halo idle, then with N
client connections open that never sent a byte, then with the same N
connections each having carried one keep-alive request (the answer read
in full, the connection left open). Prints a Markdown table of the RSS
deltas per connection.

    python3 tests/bench/idle_memory.py                  # target/release/halo
    HALO_BIN=target/debug/halo python3 tests/bench/idle_memory.py --conns 2000

Bounded: N connections (default 10,000), each phase limited in time; the
RLIMIT_NOFILE of this process and of the processes it starts is raised to
the hard limit (halo needs N client descriptors); every process started is
killed by pid, and its files removed, even when a phase fails.
"""

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HALO = os.environ.get("HALO_BIN", os.path.join(ROOT, "target/release/halo"))
PHASE_LIMIT = 120.0  # seconds, per phase


def raise_nofile():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def wait_port(port, limit=15.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing on port {port}")


def settle(pid):
    """RSS once it stopped moving (the worker may still be processing)."""
    last = rss_kib(pid)
    for _ in range(20):
        time.sleep(0.5)
        now = rss_kib(pid)
        if now == last:
            return now
        last = now
    return last


def measure(io, conns, work, base_port):
    port = base_port + 10
    sock = os.path.join(work, f"halo-{io}.sock")
    conf = os.path.join(work, f"halo-{io}.toml")
    with open(conf, "w") as f:
        f.write(
            f"""[global]
control_socket = "{sock}"
log_level = "warn"

[proxy.web]
bind = ["127.0.0.1:{port}"]
io = "{io}"
workers = 1
maxconn = 0
servers = [{{ name = "web1", address = "127.0.0.1:{base_port + 1}" }}]
[proxy.web.timeouts]
http_request = "300s"
keep_alive = "300s"
client = "300s"
"""
        )
    log = open(os.path.join(work, f"halo-{io}.log"), "w")
    p = subprocess.Popen([HALO, "run", "--config", conf], stdout=log, stderr=log, preexec_fn=raise_nofile)
    socks = []
    try:
        wait_port(port)
        time.sleep(1)
        idle = settle(p.pid)
        end = time.monotonic() + PHASE_LIMIT
        for _ in range(conns):
            if time.monotonic() > end:
                raise RuntimeError("opening connections took too long")
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        # Let the worker accept them all (and start each first read).
        time.sleep(1)
        fresh = settle(p.pid)
        end = time.monotonic() + PHASE_LIMIT
        req = b"GET /1k.html HTTP/1.1\r\nHost: bench\r\n\r\n"
        for s in socks:
            if time.monotonic() > end:
                raise RuntimeError("requests took too long")
            s.sendall(req)
            got = b""
            while b"\r\n\r\n" not in got or len(got) - got.index(b"\r\n\r\n") - 4 < 1024:
                b = s.recv(65536)
                if not b:
                    raise RuntimeError("connection closed before the answer")
                got += b
        time.sleep(1)
        used = settle(p.pid)
        return idle, fresh, used
    finally:
        for s in socks:
            s.close()
        p.kill()
        p.wait()
        log.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--ios", default="epoll,uring")
    ap.add_argument("--base-port", type=int, default=28180)
    a = ap.parse_args()
    raise_nofile()
    work = tempfile.mkdtemp(prefix="halo-idlemem.")
    os.chmod(work, 0o755)
    nginx = None
    try:
        d = os.path.join(work, "web1")
        os.makedirs(os.path.join(d, "www"))
        with open(os.path.join(d, "www/1k.html"), "w") as f:
            f.write("x" * 1024)
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(
                f"""daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    server {{ listen 127.0.0.1:{a.base_port + 1}; root {d}/www; }}
}}
"""
            )
        nginx = subprocess.Popen(["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf"), "-e", os.path.join(d, "error.log")])
        wait_port(a.base_port + 1)
        rows = []
        for io in a.ios.split(","):
            idle, fresh, used = measure(io, a.conns, work, a.base_port)
            rows.append((io, idle, fresh, used))
        print(f"halo: {HALO}; {a.conns} connections; loadavg {os.getloadavg()[0]:.1f}")
        print()
        print("| driver | RSS idle | RSS, conns open (no byte sent) | per conn | RSS, after one keep-alive request each | per conn |")
        print("|---|---|---|---|---|---|")
        for io, idle, fresh, used in rows:
            pf = (fresh - idle) / a.conns
            pu = (used - idle) / a.conns
            print(f"| {io} | {idle / 1024:.1f} MiB | {fresh / 1024:.1f} MiB | {pf:.2f} KiB | {used / 1024:.1f} MiB | {pu:.2f} KiB |")
    finally:
        if nginx is not None:
            nginx.kill()
            nginx.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
