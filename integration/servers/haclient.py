#!/usr/bin/env python3
"""Traffic for the HA integration tests (integration/Tests/HATests.swift), run in the client namespace.

Opens --conns long-lived TCP connections to --target:--port (an echo service behind the VIP). Each sends a
short message every --interval and waits for its echo before sending the next, so a connection stalled by
a failover shows as one message's round trip (its `stall`). Meanwhile a new connection is started every
--new-every seconds (non-blocking, several in flight): connect, one message, its echo, close; one that is
not done within --new-timeout, or is refused or reset, is a failure with its wall-clock start and end.

Prints one JSON line {"ready": WALLCLOCK} once every long-lived connection has had its first echo, then
runs --duration seconds more (or until SIGINT/SIGTERM) and prints the summary:
  kept            long-lived connections without an error that echoed within the last --kept-window s
  lost            the others, each with its error ("reset", "closed", "timeout" after --lost-after s
                  without an echo, or another OSError)
  resets          long-lived connections reset (ECONNRESET/EPIPE), plus new connections refused or reset
  stall           the longest round trip of one message on any long-lived connection (also counting a
                  message still unanswered at the end), and `stalls`, each connection's longest
  new_ok, new_failures ([start, end, error], wall clock)
One thread, one selector: 50 connections at 20 messages/s each and 50 new connections/s are light.
Standard library only.
"""
import argparse
import errno
import json
import selectors
import signal
import socket
import sys
import time

RESET_ERRNOS = (errno.ECONNRESET, errno.EPIPE, errno.ECONNREFUSED, errno.ECONNABORTED)


class Held:
    def __init__(self, i, sock):
        self.i, self.sock = i, sock
        self.seq = 0
        self.pending = None  # (bytes, sent_at)
        self.buf = b""
        self.next_send = 0.0
        self.last_echo = None
        self.max_rtt = 0.0
        self.echoes = 0
        self.error = None
        self.reset = False


class New:
    def __init__(self, sock, started, wall):
        self.sock, self.started, self.wall = sock, started, wall
        self.connected = False
        self.buf = b""


def main():
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--new-every", type=float, default=0.02)
    p.add_argument("--new-timeout", type=float, default=0.5)
    p.add_argument("--lost-after", type=float, default=3.0)
    p.add_argument("--kept-window", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--setup-timeout", type=float, default=5.0)
    a = p.parse_args()

    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    sel = selectors.DefaultSelector()
    wall0, mono0 = time.time(), time.monotonic()

    def wall(m):
        return wall0 + (m - mono0)

    # Long-lived connections: connected one by one, then first echo on each.
    held = []
    deadline = time.monotonic() + a.setup_timeout
    for i in range(a.conns):
        s = socket.socket(socket.AF_INET6 if ":" in a.target else socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(max(0.1, deadline - time.monotonic()))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            s.connect((a.target, a.port))
        except OSError as e:
            print(json.dumps({"error": f"setup: connection {i}: {type(e).__name__}: {e}"}), flush=True)
            return 1
        s.setblocking(False)
        h = Held(i, s)
        held.append(h)
        sel.register(s, selectors.EVENT_READ, h)

    def send(h, now):
        h.seq += 1
        msg = f"c{h.i} {h.seq}\n".encode()
        try:
            n = h.sock.send(msg)
        except OSError as e:
            fail(h, e)
            return
        if n != len(msg):  # cannot happen for a few bytes into an empty buffer
            fail(h, OSError(f"short send {n}"))
            return
        h.pending = (msg, now)

    def fail(h, e):
        if h.error:
            return
        if isinstance(e, OSError) and e.errno in RESET_ERRNOS:
            h.reset = True
            h.error = "reset"
        elif isinstance(e, str):
            h.error = e
        else:
            h.error = f"{type(e).__name__}: {e}"
        try:
            sel.unregister(h.sock)
        except (KeyError, ValueError):
            pass
        h.sock.close()

    news, new_ok, new_failures, new_resets = [], 0, [], 0

    def new_done(n, err):
        nonlocal new_ok, new_resets
        try:
            sel.unregister(n.sock)
        except (KeyError, ValueError):
            pass
        n.sock.close()
        news.remove(n)
        if err is None:
            new_ok += 1
        else:
            if isinstance(err, OSError) and err.errno in RESET_ERRNOS:
                new_resets += 1
                err = "reset" if err.errno != errno.ECONNREFUSED else "refused"
            elif not isinstance(err, str):
                err = f"{type(err).__name__}: {err}"
            if len(new_failures) < 100000:
                new_failures.append([n.wall, time.time(), err])

    def start_new(now):
        s = socket.socket(socket.AF_INET6 if ":" in a.target else socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        n = New(s, now, wall(now))
        news.append(n)
        rc = s.connect_ex((a.target, a.port))
        if rc not in (0, errno.EINPROGRESS):
            sel.register(s, selectors.EVENT_WRITE, n)
            new_done(n, OSError(rc, errno.errorcode.get(rc, str(rc))))
            return
        sel.register(s, selectors.EVENT_WRITE, n)

    ready_at = None
    end = None
    next_new = None
    now = time.monotonic()
    for h in held:
        send(h, now)

    while not stop:
        now = time.monotonic()
        if ready_at is None and now > deadline:
            print(json.dumps({"error": "setup: not every connection echoed in time",
                              "echoed": sum(1 for h in held if h.echoes)}), flush=True)
            return 1
        if end is not None and now >= end:
            break
        # Timers: sends, losses, new connections and their timeouts.
        for h in held:
            if h.error:
                continue
            if h.pending is None and now >= h.next_send and ready_at is not None:
                send(h, now)
            elif h.pending is not None and now - h.pending[1] > a.lost_after:
                fail(h, "timeout")
        for n in list(news):
            if now - n.started > a.new_timeout:
                new_done(n, "timeout")
        if next_new is not None and now >= next_new:
            start_new(now)
            next_new += a.new_every
            if next_new < now:
                next_new = now + a.new_every
        timeout = 0.005
        for key, mask in sel.select(timeout):
            obj = key.data
            now = time.monotonic()
            if isinstance(obj, Held):
                h = obj
                try:
                    data = h.sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError as e:
                    fail(h, e)
                    continue
                if not data:
                    fail(h, "closed")
                    continue
                h.buf += data
                if h.pending and h.buf.startswith(h.pending[0]):
                    rtt = now - h.pending[1]
                    h.buf = h.buf[len(h.pending[0]):]
                    if h.echoes:  # the first round trip includes start-up
                        h.max_rtt = max(h.max_rtt, rtt)
                    h.echoes += 1
                    h.last_echo = now
                    h.next_send = max(h.pending[1] + a.interval, now)
                    h.pending = None
                    if ready_at is None and all(x.echoes for x in held):
                        ready_at = now
                        end = now + a.duration
                        next_new = now
                        print(json.dumps({"ready": wall(now)}), flush=True)
                elif h.pending and not h.pending[0].startswith(h.buf[:len(h.pending[0])]):
                    fail(h, f"wrong echo {h.buf[:40]!r}")
            else:
                n = obj
                if not n.connected:
                    err = n.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        new_done(n, OSError(err, errno.errorcode.get(err, str(err))))
                        continue
                    n.connected = True
                    try:
                        n.sock.send(b"new\n")
                    except OSError as e:
                        new_done(n, e)
                        continue
                    sel.modify(n.sock, selectors.EVENT_READ, n)
                else:
                    try:
                        data = n.sock.recv(64)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        new_done(n, e)
                        continue
                    if not data:
                        new_done(n, "closed")
                        continue
                    n.buf += data
                    if n.buf == b"new\n":
                        new_done(n, None)

    now = time.monotonic()
    stalls = []
    for h in held:
        stall = h.max_rtt
        if h.pending and not h.error:
            stall = max(stall, now - h.pending[1])
        stalls.append(round(stall, 4))
    kept = [h for h in held if not h.error and h.last_echo is not None and now - h.last_echo <= a.kept_window]
    lost = [{"conn": h.i, "error": h.error or "no echo in the last %.1f s" % a.kept_window,
             "last_echo": wall(h.last_echo) if h.last_echo else None} for h in held if h not in kept]
    out = {
        "ready": wall(ready_at) if ready_at else None,
        "end": wall(now),
        "conns": len(held),
        "kept": len(kept),
        "lost": lost,
        "held_resets": sum(1 for h in held if h.reset),
        "new_resets": new_resets,
        "resets": sum(1 for h in held if h.reset) + new_resets,
        "stall": max(stalls) if stalls else 0,
        "stalls": stalls,
        "echoes": sum(h.echoes for h in held),
        "new_ok": new_ok,
        "new_failures": new_failures,
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
