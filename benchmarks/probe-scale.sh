#!/usr/bin/env bash
# Probe scale: `nftpool run` with N backends (N/100 pools of 100; 100 addresses x N/100 ports served by
# one nginx in a backend namespace), probed every 1 s, once over tcp and once over http.
#
# Per size and check: how long until every backend is up; then over SECONDS the daemon's CPU
# (utime + stime from /proc/PID/stat), how many health transitions it logged (a stable daemon logs none),
# and its resident memory (VmRSS, VmHWM). The baseline, measured in the same run against the same nginx
# with nftpool's table in place: benchmarks/probe-floor.py making the same number of probe connections a
# second with nothing but epoll, whose system CPU is the kernel's share of a probe — no prober can
# spend less. Release build; everything in namespaces nftpool-ps-$$-*.
# Usage (root): benchmarks/probe-scale.sh [SECONDS] [BACKENDS...]   default 20, 1000 5000 10000.
# Needs nginx (nginx-light).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
shift || true
sizes=${*:-1000 5000 10000}
swift build -c release --product nftpool >/dev/null
bin=$PWD/.build/release/nftpool
floor=$PWD/benchmarks/probe-floor.py
p=nftpool-ps-$$
L=$p-lb B=$p-backend
work=$(mktemp -d)
daemon=
cleanup() {
    [ -n "$daemon" ] && kill -9 "$daemon" 2>/dev/null || true
    for ns in $L $B; do
        ip netns pids $ns 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del $ns 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap "exit 130" INT TERM
ip netns add $L
ip netns add $B
ip link add l0 netns $L type veth peer name e0 netns $B
{ echo "link set lo up"; echo "link set l0 up"; echo "addr add 10.30.1.1/16 dev l0"; } | ip -n $L -batch -
{ echo "link set lo up"; echo "link set e0 up"; for a in $(seq 1 100); do echo "addr add 10.30.0.$a/16 dev e0"; done; } | ip -n $B -batch -
ip netns exec $B sysctl -qw net.core.somaxconn=4096
{
    echo "worker_processes 1; pid $work/nginx.pid; error_log $work/nginx.err; events { worker_connections 20000; }"
    echo "worker_rlimit_nofile 40000;"
    echo "http { access_log off; server {"
    for port in $(seq 8000 8099); do echo "listen $port backlog=4096;"; done
    echo 'location / { return 200 "ok\n"; } } }'
} > "$work/nginx.conf"
ip netns exec $B nginx -c "$work/nginx.conf"

spec() {  # $1: tcp or http, $2: pools
    echo "table: probescale"
    echo "pools:"
    for pool in $(seq 0 $(($2 - 1))); do
        echo "  - name: p$pool"
        echo "    frontends: [{address: 10.99.$pool.1, port: 80}]"
        echo "    healthCheck: {type: $1, port: $((8000 + pool)), interval: 1s, fastInterval: 200ms, timeout: 500ms, rise: 1, fall: 2$([ "$1" = http ] && echo ", path: /healthz")}"
        echo "    backends:"
        for a in $(seq 1 100); do echo "      - {address: 10.30.0.$a, port: $((8000 + pool))}"; done
    done
}
stat() { awk "{print \$$1}" /proc/$daemon/stat; }
transitions() { grep -c ' → ' "$work/daemon.log" || true; }
hz=$(getconf CLK_TCK)
printf '| check | backends | all up after (s) | daemon CPU (cores) | user | system | transitions while measured | kernel floor (cores) | daemon / floor | VmRSS (MB) | VmHWM (MB) |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|\n'
for n in $sizes; do
    pools=$((n / 100))
    for check in tcp http; do
        spec $check $pools > "$work/spec.yaml"
        t0=$(date +%s.%N)
        $bin run --netns $L --status-file "$work/status.json" "$work/spec.yaml" 2> "$work/daemon.log" &
        daemon=$!
        settle="never"
        for _ in $(seq 120); do  # up to 60 s
            up=$(python3 -c "import json;d=json.load(open('$work/status.json'));print(sum(b['health']=='up' for p in d['pools'] for b in p['backends']))" 2>/dev/null || echo 0)
            if [ "$up" = "$n" ]; then settle=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')"); break; fi
            sleep 0.5
        done
        sleep 2
        f0=$(transitions); u0=$(stat 14); k0=$(stat 15); s0=$(date +%s.%N)
        sleep "$secs"
        f1=$(transitions); u1=$(stat 14); k1=$(stat 15); s1=$(date +%s.%N)
        rss=$(awk '/VmRSS/{print $2/1024}' /proc/$daemon/status); hwm=$(awk '/VmHWM/{print $2/1024}' /proc/$daemon/status)
        kill -TERM $daemon; wait $daemon || true; daemon=
        # The table stays (SIGTERM), so the floor's connections are tracked by conntrack as the daemon's were.
        fl=$(ip netns exec $L python3 "$floor" $check "$n" "$secs" 10.30.0. 1 100 8000 $pools)
        ip netns exec $L nft delete table inet probescale 2>/dev/null || true
        python3 - "$check" "$n" "$settle" "$u0" "$u1" "$k0" "$k1" "$s0" "$s1" "$hz" "$((f1 - f0))" "$fl" "$rss" "$hwm" <<'EOF'
import sys
check, n, settle, u0, u1, k0, k1, s0, s1, hz, flaps, fl, rss, hwm = sys.argv[1:]
el = float(s1) - float(s0)
user, system = (int(u1) - int(u0)) / int(hz) / el, (int(k1) - int(k0)) / int(hz) / el
f = dict(kv.split("=") for kv in fl.split())
floor = float(f["sys_cores"])
print(f"| {check} | {n} | {settle} | {user + system:.2f} | {user:.2f} | {system:.2f} | {flaps} | {floor:.2f} "
      f"({f['rate']}/s, {f['failed']} failed) | {(user + system) / floor:.1f}× | {float(rss):.0f} | {float(hwm):.0f} |")
EOF
    done
done
