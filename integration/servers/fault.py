#!/usr/bin/env python3
"""A foreign change to nftpool's table, timed, run inside the LB namespace. Prints one JSON line.

Lists `table inet --table` (counters blanked, elements sorted), commits --script with `nft -f -` (one
transaction, as a person or another tool would), then lists the table every --poll seconds until the
daemon has put it back, and reports how long that took from the moment nft returned (`ms`; the kernel commits before nft
exits, so also `ms_from_start`, from before (the last) nft started: an upper bound that includes nft's
own run):
  --until same   the listing equals the one taken before the change (a table that did not change
                 otherwise in between, e.g. no health flip);
  --until valid  the table is back with a frontends-v4 element that goes to the pool (--frontend) and
                 --slots elements in the pool's slot map (a table whose health may move meanwhile).
Standard library only.
"""
import argparse
import json
import re
import subprocess
import sys
import time


def listing(table):
    r = subprocess.run(["nft", "list", "table", "inet", table], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


def normalized(text):
    """Counters blanked, each `elements = { ... }` block's entries sorted (nft prints hash order)."""
    text = re.sub(r"counter packets \d+ bytes \d+", "counter", text)
    out, pending, prefix = [], None, ""
    for line in text.split("\n"):
        if pending is None and "elements = { " in line:
            i = line.index("elements = { ") + len("elements = { ")
            prefix, pending = line[:i], [line[i:]]
        elif pending is not None:
            pending.append(line.strip())
        else:
            out.append(line)
        if pending is not None and pending[-1].endswith(" }"):
            body = " ".join(pending)[:-2]
            out.append(prefix + ", ".join(sorted(e.strip() for e in body.split(","))) + " }")
            pending = None
    return "\n".join(out)


def elements(text, name):
    """The entries of set or map `name` in a normalized listing (empty when it has none)."""
    inside = False
    for line in text.split("\n"):
        s = line.strip()
        if re.match(rf"(set|map) {re.escape(name)} \{{", s):
            inside = True
        elif inside and s.startswith("elements = { "):
            return [e.strip() for e in s[len("elements = { "):-2].split(",")]
        elif inside and s == "}":
            return []
    return []


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--table", required=True)
    p.add_argument("--script", required=True, action="append",
                   help="nft commands, committed as one transaction; given more than once, they take turns")
    p.add_argument("--repeat", type=int, default=1,
                   help="commit that many transactions back to back (each its own nft process; a refused "
                        "one, e.g. an edit of a table the previous one deleted, is counted, not fatal); "
                        "the time runs from the last one")
    p.add_argument("--until", choices=["same", "valid"], default="same")
    p.add_argument("--pool", default="web")
    p.add_argument("--frontend", default="10.99.0.1 . tcp . 80")
    p.add_argument("--slots", type=int, default=129)
    p.add_argument("--poll", type=float, default=0.005)
    p.add_argument("--timeout", type=float, default=5.0)
    a = p.parse_args()

    def restored(text):
        if text is None:
            return False
        n = normalized(text)
        if a.until == "same":
            return n == baseline
        goes = f"{a.frontend} : goto pool-{a.pool}" in elements(n, "frontends-v4")
        return goes and len(elements(n, f"pool-{a.pool}-slots")) == a.slots

    before = listing(a.table)
    baseline = normalized(before) if before is not None else None
    out = {"script": a.script}
    if a.until == "same" and baseline is None:
        out["error"] = "no table to change"
        print(json.dumps(out))
        return
    committed, refused, start = 0, 0, time.time()
    for i in range(a.repeat):
        last_start = time.time()
        r = subprocess.run(["nft", "-f", "-"], input=a.script[i % len(a.script)] + "\n", capture_output=True, text=True)
        if r.returncode == 0:
            committed += 1
        else:
            refused += 1
    end = time.time()
    t0 = time.monotonic()
    out.update({"start": start, "last_start": last_start, "end": end, "nft_status": r.returncode,
                "nft_error": r.stderr.strip(), "committed": committed, "refused": refused})
    if a.repeat == 1 and r.returncode != 0:
        print(json.dumps(out))
        return
    polls, last = 0, None
    while True:
        last = listing(a.table)
        polls += 1
        now = time.monotonic()
        if restored(last):
            restored_at = time.time()
            out.update({"restored": True, "ms": (now - t0) * 1000, "ms_from_start": (restored_at - last_start) * 1000,
                        "restored_at": restored_at, "polls": polls})
            break
        if now - t0 > a.timeout:
            out.update({"restored": False, "ms": (now - t0) * 1000, "polls": polls, "last": last,
                        "baseline": baseline})
            break
        time.sleep(a.poll)
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
