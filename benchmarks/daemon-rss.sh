#!/usr/bin/env bash
# The daemon's resident memory with a large table and no probes (issue 15): `nftpool run` of POOLS pools x
# BACKENDS backends (round-robin, auto slots, no healthCheck: every enabled backend counts as up and nothing
# is probed) in a scratch network namespace, twice: metrics on their default address, and
# `--metrics-address off`. VmRSS and VmHWM (/proc/PID/status) are read when the daemon says READY=1 over
# $NOTIFY_SOCKET (the table is programmed), and again 10 s and 20 s later (steady state: at 100,000
# backends the metrics registry is built in the ~6 s after READY), with the time from start to READY.
#
# Usage (root): benchmarks/daemon-rss.sh [POOLSxBACKENDS ...]   default 1000x100 (100,000 backends)
# Release build. Namespace nftpool-rss-$$, removed on exit (with the daemon). Holds /tmp/nftpool-cpu.lock.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${NFTPOOL_CPU_LOCKED:-}" != 1 ]; then
    exec env NFTPOOL_CPU_LOCKED=1 flock /tmp/nftpool-cpu.lock "$0" "$@"
fi
[ $# -eq 0 ] && set -- 1000x100
swift build -c release --product nftpool >/dev/null
bin=$PWD/.build/release/nftpool
ns=nftpool-rss-$$
work=$(mktemp -d)
daemon=
cleanup() {
    [ -n "$daemon" ] && kill -9 "$daemon" 2>/dev/null || true
    ip netns pids $ns 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del $ns 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap "exit 130" INT TERM

printf '| pools x backends | backends | slot elements | metrics | start to READY (s) | VmRSS at READY (MB) | VmRSS +10 s (MB) | VmRSS +20 s (MB) | VmHWM (MB) |\n|---|---|---|---|---|---|---|---|---|\n'
for size in "$@"; do
  for metrics in default off; do
    pools=${size%x*} per=${size#*x}
    ip netns add $ns
    ip -n $ns link set lo up
    python3 - "$work/spec.json" "$pools" "$per" <<'PY'
import json, sys
path, pools, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
json.dump({"table": "rss", "pools": [
    {"name": f"p{p}", "frontends": [{"address": f"10.{p // 250}.{p % 250}.1", "port": 443}],
     "backends": [{"address": f"172.{16 + b // 250}.{p % 250}.{b % 250 + 1}", "port": 8000 + p // 250} for b in range(per)]}
    for p in range(pools)]}, open(path, "w"))
PY
    elements=$($bin render "$work/spec.json" | grep -c ' : [0-9.]* \. [0-9]*' || true)
    rm -f "$work/notify"
    # READY=1 arrives on a datagram socket of our own, as systemd's would.
    python3 - "$work/notify" > "$work/ready" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(300)
while True:
    data = s.recv(65536).decode()
    if "READY=1" in data.split("\n"):
        print(time.monotonic()); break
PY
    listener=$!
    while [ ! -S "$work/notify" ]; do sleep 0.05; done
    t0=$(python3 -c 'import time; print(time.monotonic())')
    margs=(); [ $metrics = off ] && margs=(--metrics-address off)
    NOTIFY_SOCKET=$work/notify $bin run --netns $ns --status-file "$work/status.json" \
        --state-file "$work/state.json" "${margs[@]}" "$work/spec.json" 2>"$work/daemon.log" &
    daemon=$!
    wait $listener
    ready=$(cat "$work/ready")
    # `--netns` re-executes the binary inside the namespace: the daemon is the process holding the spec there.
    pid=$(ip netns pids $ns | head -1)
    kb() { awk -v k="$1:" '$1==k{print $2}' /proc/$pid/status; }
    r0=$(kb VmRSS)
    sleep 10; r10=$(kb VmRSS)
    sleep 10; r20=$(kb VmRSS); hwm=$(kb VmHWM)
    python3 -c "print(f'| $pools x $per | {$pools * $per} | $elements | $metrics | {$ready - $t0:.1f} | {$r0/1024:.0f} | {$r10/1024:.0f} | {$r20/1024:.0f} | {$hwm/1024:.0f} |')"
    kill "$daemon"; wait "$daemon" || true; daemon=
    ip netns del $ns
  done
done
