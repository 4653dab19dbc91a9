#!/usr/bin/env python3
"""The kernel's share of a health probe: the least a prober can ask of the kernel.

Opens RATE probe connections a second for SECONDS, round-robin over the targets, each a non-blocking
connect watched by epoll and closed with a reset (SO_LINGER 0) as nftpool closes its probes; with
--http it first sends a GET and waits for the status line. Prints the system CPU it took (its user CPU is
Python's and says nothing about the kernel) as one line: rate=… ok=… failed=… sys_cores=… user_cores=….

Usage: probe-floor.py tcp|http RATE SECONDS ADDRESS_PREFIX FIRST_HOST HOSTS FIRST_PORT PORTS
"""
import os
import resource
import select
import socket
import struct
import sys
import time

mode, rate, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
prefix, first_host, hosts, first_port, ports = sys.argv[4], *map(int, sys.argv[5:9])
targets = [(f"{prefix}{h}", p) for p in range(first_port, first_port + ports)
           for h in range(first_host, first_host + hosts)]
request = b"GET /healthz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
reset = struct.pack("ii", 1, 0)
timeout = 0.5  # as the daemon's probes in probe-scale.sh
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
poll = select.epoll()
open_ = {}  # fd -> (socket, started sending, deadline)
ok = failed = started = peak = 0


def finish(fd, good):
    global ok, failed
    s, _, _ = open_.pop(fd)
    poll.unregister(fd)
    s.close()
    if good:
        ok += 1
    else:
        failed += 1


t0 = sweep = time.monotonic()
c0 = os.times()
while (now := time.monotonic()) - t0 < secs:
    while started < int((now - t0) * rate):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, reset)
        s.connect_ex(targets[started % len(targets)])
        poll.register(s.fileno(), select.EPOLLOUT)
        open_[s.fileno()] = (s, False, now + timeout)
        started += 1
    peak = max(peak, len(open_))
    if now >= sweep:  # probes past their timeout fail, as a prober's must
        for fd in [fd for fd, (_, _, deadline) in open_.items() if deadline < now]:
            finish(fd, False)
        sweep = now + 0.05
    for fd, events in poll.poll(0.001):
        s, sent, deadline = open_[fd]
        if not sent:
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) or mode == "tcp":
                finish(fd, mode == "tcp" and not s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
                continue
            s.send(request)
            open_[fd] = (s, True, deadline)
            poll.modify(fd, select.EPOLLIN)
        else:
            try:
                finish(fd, s.recv(4096).startswith(b"HTTP/1.1 200"))
            except OSError:
                finish(fd, False)
c1 = os.times()
elapsed = time.monotonic() - t0
print(f"rate={(ok + failed) / elapsed:.0f} ok={ok} failed={failed} peak_open={peak} "
      f"sys_cores={(c1.system - c0.system) / elapsed:.3f} user_cores={(c1.user - c0.user) / elapsed:.3f}")
