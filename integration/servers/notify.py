#!/usr/bin/env python3
"""A stand-in for systemd's notify socket: binds a datagram socket (a path, or @name for an abstract
one), prints {"ready": true} once bound, then one JSON line per datagram received, with its arrival
time on CLOCK_MONOTONIC (microseconds), until a datagram starts with --until, or --seconds pass."""
import argparse, json, socket, sys, time

p = argparse.ArgumentParser()
p.add_argument("--socket", required=True)
p.add_argument("--seconds", type=float, default=60)
p.add_argument("--until", default="STOPPING=1")
a = p.parse_args()
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + a.socket[1:] if a.socket.startswith("@") else a.socket)
print(json.dumps({"ready": True}), flush=True)
end = time.monotonic() + a.seconds
while time.monotonic() < end:
    s.settimeout(max(0.01, end - time.monotonic()))
    try:
        data = s.recv(4096)
    except socket.timeout:
        break
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    print(json.dumps({"at": now, "message": data.decode()}), flush=True)
    if data.decode().startswith(a.until):
        break
print(json.dumps({"end": True}), flush=True)
