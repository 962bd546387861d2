#!/usr/bin/env python3
"""A fine-grained ping for the failover benchmark (not a test).

    icmp_probe.py DEST INTERVAL DURATION

Sends an ICMP echo request to DEST every INTERVAL seconds for DURATION
seconds and prints one line per echo reply: its kernel receive time
(SO_TIMESTAMPNS, seconds since the epoch) and its sequence number.

Why not iputils ping: below a 10 ms interval it busy-waits between
probes (a whole CPU; `-i 0.002` used 2.9 s of CPU in 3 s here), so at
real-time priority the kernel's RT throttling (sched_rt_runtime_us, 95 %
of each second) stops it for ~50 ms every second, which reads as a 50 ms
gap the network did not make; and while replies are missing it slows to
one probe per 10 ms. This one sleeps between probes and keeps its pace.
Bounded: DURATION / INTERVAL probes at most. Needs root (a raw socket).
"""

import os
import select
import socket
import struct
import sys
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo(ident, seq):
    head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    payload = b"halo-probe" + b"\0" * 22
    return struct.pack("!BBHHH", 8, 0, checksum(head + payload), ident, seq) + payload


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: icmp_probe.py DEST INTERVAL DURATION")
    dest, interval, duration = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    if not (0.0005 <= interval <= 1 and 0 < duration <= 60):
        sys.exit("icmp_probe.py: INTERVAL 0.0005-1 s, DURATION up to 60 s")
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.setblocking(False)
    ident = os.getpid() & 0xFFFF
    start = time.monotonic()
    end = start + duration
    seq = 0
    next_send = start
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if now >= next_send:
            try:
                s.sendto(echo(ident, seq & 0xFFFF), (dest, 0))
            except OSError:
                pass  # no route or neighbour yet: the gap shows it
            seq += 1
            # Keep the pace: a late probe does not push the next ones back.
            next_send += interval
            continue
        ready, _, _ = select.select([s], [], [], min(next_send, end) - now)
        if not ready:
            continue
        while True:
            try:
                data, anc, _, _ = s.recvmsg(2048, 64)
            except BlockingIOError:
                break
            ihl = (data[0] & 0x0F) * 4
            if len(data) < ihl + 8:
                continue
            typ, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if typ != 0 or rid != ident:
                continue
            stamp = time.time()
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                    sec, nsec = struct.unpack("qq", value[:16])
                    stamp = sec + nsec / 1e9
            print(f"{stamp:.6f} {rseq}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
