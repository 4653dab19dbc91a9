#!/usr/bin/env bash
# nftpool's health checker against HAProxy's, side by side in one run (issue 14).
#
# Per size (N backends: N/100 pools of 100; 100 addresses x N/100 ports served by one nginx worker in a
# backend namespace, as in probe-scale.sh) and per check (tcp, then http), each engine in turn probes every
# backend every 1 s from the same LB namespace, against the same nginx:
#   nftpool  `nftpool run`, interval 1s, fastInterval 200ms, timeout 500ms, rise 1, fall 2; http asks
#            GET / over the connection it kept from the last probe.
#   haproxy  `check inter 1s fastinter 200ms rise 1 fall 2`, timeout connect 500ms (+ timeout check 500ms
#            to read an http answer), nbthread 2 (nftpool runs 2 event loops); http is
#            `option httpchk GET /`, a new connection per check.
# Once every backend passes (at most SETTLE seconds), then 2 s more, over SECONDS:
#   checks/s       counted at the backend: SYNs reaching nginx's interface (tcp; an nft counter in the
#                  backend namespace) or requests nginx served (http; its stub_status). "new conns/s" is the
#                  SYN count for http too. nftpool's own count (nftpool_backend_checks_total from its
#                  /metrics on loopback in the LB namespace) is shown beside it; HAProxy keeps no such total.
#   failed/s       nftpool: checks_total not "success"; haproxy: chkfail from `show stat`.
#   transitions    nftpool: log lines " → "; haproxy: chkdown (UP->DOWN) from `show stat`.
#   CPU            utime + stime of the engine's process (/proc/PID/stat, all threads) over the window;
#                  per check = that CPU / checks done. The engines' own counters are read outside the CPU
#                  window (a 10,000-backend scrape is ~100 ms of the daemon's CPU), the backend's inside.
#   VmRSS          of the engine at the start of the window, before the first /metrics scrape (nftpool's
#                  render keeps buffers the size of its text: ~21 MB at 10,000 backends), and at the end of
#                  the window, after one scrape (for HAProxy, one `show stat`).
# Each nftpool run starts without a table (a first start: every backend down until it passes) and leaves
# its table (SIGTERM) for the HAProxy run after it, so conntrack tracks both engines' checks alike.
#
# Usage (root): benchmarks/probes-vs-haproxy.sh [SECONDS] [BACKENDS...]   default 15, 1000 3000 10000.
# Env: SETTLE (default 90) seconds to wait for all backends passing; LIMIT (default 1800) for the whole run;
# PERF_DIR: also `perf record -g` each engine for SECONDS after its measured window, into that directory.
# Needs nginx (nginx-light), haproxy, curl. Release build. Everything runs in namespaces
# nftpool-pvh-$$-{lb,backend}, removed on exit; the whole run (build and measurements) holds
# /tmp/nftpool-cpu.lock, so nobody builds on the shared machine while it measures.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${NFTPOOL_CPU_LOCKED:-}" != 1 ]; then
    exec env NFTPOOL_CPU_LOCKED=1 flock /tmp/nftpool-cpu.lock "$0" "$@"
fi
secs=${1:-15}
shift || true
sizes=${*:-1000 3000 10000}
settle_max=${SETTLE:-90}
limit=${LIMIT:-1800}
swift build -c release --product nftpool >/dev/null
bin=$PWD/.build/release/nftpool
p=nftpool-pvh-$$
L=$p-lb B=$p-backend
work=$(mktemp -d)
engine= watchdog=
cleanup() {
    [ -n "$engine" ] && kill -9 "$engine" 2>/dev/null || true
    [ -n "$watchdog" ] && kill "$watchdog" 2>/dev/null || true
    for ns in $L $B; do
        ip netns pids $ns 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del $ns 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap "exit 130" INT TERM
( sleep "$limit"; echo "probes-vs-haproxy: over ${limit}s, stopping" >&2; kill -TERM $$ ) &
watchdog=$!

ip netns add $L
ip netns add $B
ip link add l0 netns $L type veth peer name e0 netns $B
{ echo "link set lo up"; echo "link set l0 up"; echo "addr add 10.30.1.1/16 dev l0"; } | ip -n $L -batch -
{ echo "link set lo up"; echo "link set e0 up"; for a in $(seq 1 100); do echo "addr add 10.30.0.$a/16 dev e0"; done; } | ip -n $B -batch -
ip netns exec $B sysctl -qw net.core.somaxconn=4096
# Checks reaching the backend: SYNs in on the veth (the stub_status queries come over loopback).
ip netns exec $B nft -f - <<'EOF'
table inet pvh {
    counter syns {}
    chain input { type filter hook input priority 0; policy accept; iifname "e0" tcp flags & (syn | ack) == syn counter name syns; }
}
EOF
{
    echo "worker_processes 1; pid $work/nginx.pid; error_log $work/nginx.err; events { worker_connections 20000; }"
    echo "worker_rlimit_nofile 40000;"
    echo "http { access_log off;"
    echo "server { listen 127.0.0.1:9000; location / { stub_status; } }"
    echo "server {"
    for port in $(seq 8000 8099); do echo "listen $port backlog=4096;"; done
    echo 'location / { return 200 "ok\n"; } } }'
} > "$work/nginx.conf"
ip netns exec $B nginx -c "$work/nginx.conf"

nftpool_spec() {  # $1: tcp or http, $2: pools
    echo "table: probescale"
    echo "pools:"
    for pool in $(seq 0 $(($2 - 1))); do
        echo "  - name: p$pool"
        echo "    frontends: [{address: 10.99.$pool.1, port: 80}]"
        echo "    healthCheck: {type: $1, port: $((8000 + pool)), interval: 1s, fastInterval: 200ms, timeout: 500ms, rise: 1, fall: 2$([ "$1" = http ] && echo ", path: /")}"
        echo "    backends:"
        for a in $(seq 1 100); do echo "      - {address: 10.30.0.$a, port: $((8000 + pool))}"; done
    done
}
haproxy_cfg() {  # $1: tcp or http, $2: pools
    echo "global"
    echo "    nbthread 2"
    echo "    stats socket $work/haproxy.sock mode 600 level admin"
    echo "    maxconn 2000"
    for pool in $(seq 0 $(($2 - 1))); do
        echo "backend p$pool"
        echo "    mode $1"
        echo "    timeout connect 500ms"
        echo "    timeout check 500ms"
        echo "    timeout server 5s"
        [ "$1" = http ] && echo "    option httpchk GET /"
        echo "    default-server check inter 1s fastinter 200ms rise 1 fall 2"
        for a in $(seq 1 100); do echo "    server s$a 10.30.0.$a:$((8000 + pool))"; done
    done
}

# Counters. The engine's own: "total failed downs" (nftpool: checks_total, its non-success part,
# transitions logged; haproxy: -, chkfail, chkdown).
own() {  # $1 engine
    if [ "$1" = nftpool ]; then
        ip netns exec $L curl -sf --max-time 20 http://127.0.0.1:9742/metrics |
            awk -v t="$(grep -c ' → ' "$work/engine.log" || true)" '
                /^nftpool_backend_checks_total\{/ { total += $NF; if ($0 !~ /outcome="success"/) failed += $NF }
                END { printf "%d %d %d\n", total, failed, t }'
    else
        python3 - "$work/haproxy.sock" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(20); s.connect(sys.argv[1]); s.sendall(b"show stat\n")
data = b""
while chunk := s.recv(65536): data += chunk
lines = data.decode().splitlines()
head = lines[0].lstrip("# ").split(",")
fail = down = 0
for line in lines[1:]:
    row = dict(zip(head, line.split(",")))
    if row.get("svname") in (None, "FRONTEND", "BACKEND"): continue
    fail += int(row["chkfail"] or 0); down += int(row["chkdown"] or 0)
print(0, fail, down)
EOF
    fi
}
passing() {  # $1 engine: how many backends pass their checks now
    if [ "$1" = nftpool ]; then
        python3 -c "import json;d=json.load(open('$work/status.json'));print(sum(b['health']=='up' for p in d['pools'] for b in p['backends']))" 2>/dev/null || echo 0
    else
        python3 - "$work/haproxy.sock" <<'EOF' 2>/dev/null || echo 0
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1]); s.sendall(b"show stat\n")
data = b""
while chunk := s.recv(65536): data += chunk
lines = data.decode().splitlines()
head = lines[0].lstrip("# ").split(",")
rows = [dict(zip(head, l.split(","))) for l in lines[1:]]
print(sum(r["status"] == "UP" and r["check_status"] in ("L4OK", "L7OK") for r in rows if r.get("svname") not in (None, "FRONTEND", "BACKEND")))
EOF
    fi
}
# The engine's counters with the time they stand for (the middle of the request).
own_at() {
    local t0 r
    t0=$(date +%s.%N); r=$(own "$1")
    echo "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.3f", (a + b) / 2}') $r"
}
# The CPU window's counters, in the same order at both ends: time, utime, stime, SYNs, nginx requests.
snap() {
    local t u k syns reqs
    t=$(date +%s.%N)
    read -r u k < <(awk '{print $14, $15}' /proc/$engine/stat)
    syns=$(ip netns exec $B nft list counter inet pvh syns | awk '/packets/{print $2}')
    reqs=$(ip netns exec $B curl -sf --max-time 5 http://127.0.0.1:9000/ | awk 'NR==3{print $3}')
    echo "$t $u $k $syns $reqs"
}

hz=$(getconf CLK_TCK)
echo "probes-vs-haproxy: $(date -u +%Y-%m-%dT%H:%MZ), ${secs}s windows, sizes $sizes, $(nproc) cores" >&2
printf '| check | backends | engine | all passing after (s) | checks/s | own count/s | failed/s | transitions | new conns/s | CPU (cores) | CPU per check (µs) | user (µs) | sys (µs) | VmRSS (MB) | VmRSS after a scrape (MB) |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for n in $sizes; do
    pools=$((n / 100))
    for check in tcp http; do
        for eng in nftpool haproxy; do
            if [ $eng = nftpool ]; then
                # A first start (every backend down until it passes), as for HAProxy: not the last run's table.
                ip netns exec $L nft delete table inet probescale 2>/dev/null || true
                nftpool_spec $check $pools > "$work/spec.yaml"
                t0=$(date +%s.%N)
                $bin run --netns $L --status-file "$work/status.json" --state-file "$work/state.json" \
                    --metrics-address 127.0.0.1:9742 "$work/spec.yaml" 2> "$work/engine.log" &
            else
                haproxy_cfg $check $pools > "$work/haproxy.cfg"
                rm -f "$work/haproxy.sock"
                t0=$(date +%s.%N)
                ip netns exec $L haproxy -db -f "$work/haproxy.cfg" > "$work/engine.log" 2>&1 &
            fi
            engine=$!
            settle="never"
            deadline=$(($(date +%s) + settle_max))
            while [ "$(date +%s)" -lt "$deadline" ]; do
                if [ "$(passing $eng)" = "$n" ]; then settle=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')"); break; fi
                sleep 0.5
            done
            sleep 2
            rss0=$(awk '/VmRSS/{print $2/1024}' /proc/$engine/status)
            o0=$(own_at $eng); a=$(snap)
            sleep "$secs"
            b=$(snap); o1=$(own_at $eng)
            rss1=$(awk '/VmRSS/{print $2/1024}' /proc/$engine/status)
            if [ -n "${PERF_DIR:-}" ]; then  # a profile after the measured window, never during it
                perf record -q -g -F 1999 -p $engine -o "$PERF_DIR/$check-$n-$eng.data" -- sleep "$secs" >/dev/null 2>&1 || true
            fi
            kill -TERM $engine; wait $engine || true; engine=
            python3 - "$check" "$n" "$eng" "$settle" "$hz" "$a" "$b" "$o0" "$o1" "$secs" "$rss0" "$rss1" <<'EOF'
import sys
check, n, eng, settle, hz, a, b, o0, o1, secs, rss0, rss1 = sys.argv[1:]
t0, u0, k0, s0, r0 = map(float, a.split()); t1, u1, k1, s1, r1 = map(float, b.split())
(w0, c0, f0, d0), (w1, c1, f1, d1) = map(float, o0.split()), map(float, o1.split())
el, hz = t1 - t0, int(hz)
syns, reqs = (s1 - s0) / el, (r1 - r0 - 1) / el  # one request is the first stub_status query
checks = syns if check == "tcp" else reqs
user, system = (u1 - u0) / hz, (k1 - k0) / hz
own = f"{(c1 - c0) / (w1 - w0):.0f}" if eng == "nftpool" else "–"
per = lambda cpu: f"{cpu / (checks * el) * 1e6:.0f}" if checks else "–"
print(f"| {check} | {n} | {eng} | {settle} | {checks:.0f} | {own} | {(f1 - f0) / (w1 - w0):.0f} | {d1 - d0:.0f} | {syns:.0f} | "
      f"{(user + system) / el:.2f} | {per(user + system)} | {per(user)} | {per(system)} | {float(rss0):.0f} | {float(rss1):.0f} |", flush=True)
EOF
        done
    done
    ip netns exec $L nft delete table inet probescale 2>/dev/null || true
done
