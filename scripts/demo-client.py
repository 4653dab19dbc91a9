#!/usr/bin/env python3
"""The client of scripts/demo: HTTPS requests to the VIP, each verified against the sandbox's CA, one line per
request. The demo's servers answer any path with "<server name> <client address it saw>".

  loop      a new connection (TCP + TLS + GET) every --every seconds until SIGTERM or SIGINT; each line is
            "<start, unix time> <duration ms> ok <server>" or "<start> <duration ms> FAIL <error>"
  failover  reads a loop's lines and the time of a kill: prints the requests around it and the figures
  hold      one keep-alive connection, a GET on it every --every seconds for --duration seconds, then closes
            it; each line is "<seconds since it opened> ok <server> (connection from port P)"
  count     N new connections one after the other; prints how many each server answered
Standard library only.
"""
import argparse
import signal
import socket
import ssl
import sys
import time


def tls_context(cafile):
    return ssl.create_default_context(cafile=cafile)  # verifies the chain and that the cert names the VIP


def connect(a, ctx):
    raw = socket.create_connection((a.target, a.port), timeout=a.timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    quickack(raw)
    try:
        return ctx.wrap_socket(raw, server_hostname=a.target)
    except BaseException:
        raw.close()
        raise


def quickack(sock):
    # The servers write a response's head and body apart: without this, the second waits for our delayed
    # ACK (40 ms). Linux clears it now and then, so it is set again before every read.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def get(sock, host):
    """One HTTP/1.1 GET on an open (TLS) connection; returns the server's name."""
    sock.sendall(f"GET /version HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        quickack(sock)
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the response")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        quickack(sock)
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    return body.decode().split(" ")[0]


def one_request(a, ctx):
    s = connect(a, ctx)
    try:
        return get(s, a.target)
    finally:
        s.close()


def describe(e):
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, ConnectionResetError):
        return "reset"
    return f"{type(e).__name__}: {e}"


def cmd_loop(a):
    ctx = tls_context(a.cacert)
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(1))
    next_start = time.time()
    while not stop:
        started = time.time()
        try:
            outcome = "ok " + one_request(a, ctx)
        except Exception as e:  # noqa: BLE001 - every failure is a line of the output
            outcome = "FAIL " + describe(e)
        print(f"{started:.6f} {(time.time() - started) * 1000:.1f} {outcome}", flush=True)
        next_start = max(next_start + a.every, time.time())  # late: the next one at once, no burst
        time.sleep(max(0.0, next_start - time.time()))


def cmd_failover(a):
    rows = []  # (start, end, outcome)
    with open(a.log) as f:
        for line in f:
            start, ms, outcome = line.rstrip("\n").split(" ", 2)
            rows.append((float(start), float(start) + float(ms) / 1000, outcome))
    kill = a.kill_at
    before = sum(1 for r in rows if r[0] < kill)
    failed = [i for i, r in enumerate(rows) if r[2].startswith("FAIL")]
    if before == len(rows):
        sys.exit("no request after the kill")
    # The lines around the kill: three before it, every one up to the last failure, three after that.
    first, last = max(0, before - 3), min(len(rows), max(failed + [before]) + 4)
    for i in range(first, last):
        if i == before:
            print(f"  {0:+7.3f} s             kill -9 {a.victim}")
        start, end, outcome = rows[i]
        print(f"  {start - kill:+7.3f} s {(end - start) * 1000:6.1f} ms  {outcome}")
    if last < len(rows):
        rest = rows[last:]
        bad = sum(1 for r in rest if r[2].startswith("FAIL"))
        print(f"  ... {len(rest)} more to {rest[-1][0] - kill:+.3f} s, {bad} failed")
    span = rows[-1][1] - rows[0][0]
    print(f"{len(rows)} requests in {span:.1f} s, {before} before the kill and {len(rows) - before} after it")
    if not failed:
        print("none failed")
        return
    errors = sorted({rows[i][2][5:] for i in failed})
    last_end = rows[failed[-1]][1]
    verdict = "within a second" if last_end - kill < 1 else "MORE than a second"
    print(f"{len(failed)} failed ({', '.join(errors)}); the last one ended {last_end - kill:.3f} s after the kill: {verdict}")
    after = [r[2].split(" ")[1] for r in rows if r[0] > last_end]
    spread = ", ".join(f"{n} {after.count(n)}" for n in sorted(set(after)))
    print(f"the {len(after)} requests since then ({rows[-1][0] - last_end:.1f} s): all answered, by {spread}")


def cmd_hold(a):
    ctx = tls_context(a.cacert)
    s = connect(a, ctx)
    port = s.getsockname()[1]
    opened = time.monotonic()
    end = opened + a.duration
    try:
        while True:
            t = time.monotonic() - opened
            try:
                print(f"{t:5.1f} s ok {get(s, a.target)} (connection from port {port})", flush=True)
            except Exception as e:  # noqa: BLE001
                print(f"{t:5.1f} s FAIL {describe(e)} (connection from port {port})", flush=True)
                return
            if time.monotonic() + a.every > end:
                break
            time.sleep(a.every)
    finally:
        s.close()
    print(f"{time.monotonic() - opened:5.1f} s closed", flush=True)


def cmd_count(a):
    ctx = tls_context(a.cacert)
    counts, failures = {}, 0
    for _ in range(a.n):
        try:
            name = one_request(a, ctx)
            counts[name] = counts.get(name, 0) + 1
        except Exception:  # noqa: BLE001
            failures += 1
    print(", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f"; {failures} failed")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["loop", "failover", "hold", "count"])
    p.add_argument("--target", default="10.99.0.1")
    p.add_argument("--port", type=int, default=6443)
    p.add_argument("--cacert")
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument("--every", type=float, default=0.02, help="seconds between requests (loop, hold)")
    p.add_argument("--duration", type=float, default=5.0, help="hold: seconds the connection is kept")
    p.add_argument("--n", type=int, default=30, help="count: requests")
    p.add_argument("--log", help="failover: a loop's output")
    p.add_argument("--kill-at", type=float, help="failover: unix time just before the kill")
    p.add_argument("--victim", help="failover: the killed server's name")
    a = p.parse_args()
    {"loop": cmd_loop, "failover": cmd_failover, "hold": cmd_hold, "count": cmd_count}[a.mode](a)


if __name__ == "__main__":
    main()
