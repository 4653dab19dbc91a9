#!/usr/bin/env python3
"""Traffic for the integration tests, run inside the client namespace. Prints JSON, one object per line.

  count   N new connections (TCP: one HTTP GET each; UDP: one datagram each), from each --sources address
          --repeat times; reports which backend answered each, and every failure.
  connect one TCP connection attempt; reports how it ended and how long it took.
  hold    one keep-alive HTTP connection, a request every --interval for --duration seconds; prints the
          first backend at once (so a test can act while it is held), then a summary.
  loop    new connections back to back for --duration seconds (or until SIGINT); prints the first success
          at once, then successes and failures, each failure with its wall-clock start and end
          (`failure_times`, so a test can attribute it to what it did at that time).
Standard library only.
"""
import argparse
import json
import signal
import socket
import sys
import time


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def http_get(sock, host):
    sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
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
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    return body.decode().strip()


def one_tcp(a, source):
    s = socket.socket(family(a.target), socket.SOCK_STREAM)
    s.settimeout(a.timeout)
    try:
        if source:
            s.bind((source, 0))
        s.connect((a.target, a.port))
        return http_get(s, a.target)
    finally:
        s.close()


def one_udp(a, source):
    s = socket.socket(family(a.target), socket.SOCK_DGRAM)
    s.settimeout(a.timeout)
    try:
        if source:
            s.bind((source, 0))
        s.sendto(b"hello\n", (a.target, a.port))
        data, _ = s.recvfrom(2048)
        return data.decode().strip()
    finally:
        s.close()


def cmd_count(a):
    sources = a.sources.split(",") if a.sources else [None]
    counts, by_source, errors, failures, seen = {}, {}, [], 0, {}
    for src in sources:
        for _ in range(a.repeat):
            for _ in range(a.n):
                try:
                    reply = (one_udp if a.proto == "udp" else one_tcp)(a, src)
                except Exception as e:  # noqa: BLE001 - every failure is counted and shown
                    failures += 1
                    if len(errors) < 5:
                        errors.append(f"{type(e).__name__}: {e}")
                    continue
                name, _, peer = reply.partition(" ")
                counts[name] = counts.get(name, 0) + 1
                seen[peer] = seen.get(peer, 0) + 1
                if src:
                    by_source.setdefault(src, []).append(name)
    print(json.dumps({"counts": counts, "failures": failures, "errors": errors, "by_source": by_source,
                      "peers": seen}))


def cmd_connect(a):
    s = socket.socket(family(a.target), socket.SOCK_STREAM)
    s.settimeout(a.timeout)
    t0 = time.monotonic()
    try:
        s.connect((a.target, a.port))
        name = http_get(s, a.target).split(" ")[0]
        out = {"ok": True, "name": name}
    except ConnectionRefusedError:
        out = {"ok": False, "error": "refused"}
    except (socket.timeout, TimeoutError):
        out = {"ok": False, "error": "timeout"}
    except OSError as e:
        out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    finally:
        s.close()
    out["elapsed"] = time.monotonic() - t0
    print(json.dumps(out))


def cmd_hold(a):
    s = socket.socket(family(a.target), socket.SOCK_STREAM)
    s.settimeout(a.timeout)
    s.connect((a.target, a.port))
    first = http_get(s, a.target).split(" ")[0]
    print(json.dumps({"first": first}), flush=True)
    names, requests, failures, error = {first}, 1, 0, None
    end = time.monotonic() + a.duration
    while time.monotonic() < end:
        time.sleep(a.interval)
        try:
            names.add(http_get(s, a.target).split(" ")[0])
            requests += 1
        except Exception as e:  # noqa: BLE001
            failures += 1
            error = f"{type(e).__name__}: {e}"
            break
    s.close()
    print(json.dumps({"names": sorted(names), "requests": requests, "failures": failures, "error": error}))


def cmd_loop(a):
    ok, failures, errors, counts, failure_times = 0, 0, [], {}, []
    buckets = {}  # wall-clock second -> backend -> connections (with --buckets)
    first_failure = last_failure = None
    end = time.monotonic() + a.duration
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    while time.monotonic() < end and not stop:
        if a.pause:
            time.sleep(a.pause)
        started = time.time()
        try:
            name = one_tcp(a, None).split(" ")[0]
            if ok == 0:
                print(json.dumps({"started": name}), flush=True)
            ok += 1
            counts[name] = counts.get(name, 0) + 1
            if a.buckets:
                b = buckets.setdefault(str(int(started)), {})
                b[name] = b.get(name, 0) + 1
        except Exception as e:  # noqa: BLE001
            failures += 1
            last_failure = time.time()
            first_failure = first_failure or last_failure
            if len(failure_times) < 100000:
                failure_times.append([started, last_failure, f"{type(e).__name__}: {e}"])
            if len(errors) < 5:
                errors.append(f"{type(e).__name__}: {e}")
    print(json.dumps({"ok": ok, "failures": failures, "errors": errors, "counts": counts,
                      "first_failure": first_failure, "last_failure": last_failure,
                      "failure_times": failure_times, "buckets": buckets}))


def main():
    # A Swift test runner's threads block most signals, and a spawned child inherits that mask: unblock
    # the ones the harness uses to stop us.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["count", "connect", "hold", "loop"])
    p.add_argument("--target", required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--proto", choices=["tcp", "udp"], default="tcp")
    p.add_argument("--n", type=int, default=1)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--sources")
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--duration", type=float, default=1.0)
    p.add_argument("--pause", type=float, default=0.0, help="loop: seconds between connections")
    p.add_argument("--buckets", action="store_true", help="loop: count connections per backend per wall-clock second")
    a = p.parse_args()
    {"count": cmd_count, "connect": cmd_connect, "hold": cmd_hold, "loop": cmd_loop}[a.mode](a)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
