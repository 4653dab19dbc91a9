#!/usr/bin/env bash
# Probe scale: `nftpool run` with 10,000 backends (100 pools x 100; 100 addresses x 100 ports served by one
# nginx in a backend namespace), probed every 1 s, once over tcp and once over http. After the daemon
# has settled (all backends up), its CPU (utime + stime from /proc/PID/stat) is measured over SECONDS, and
# its resident memory (VmRSS, VmHWM). Release build; everything in namespaces nftpool-ps-$$-*.
# Usage (root): benchmarks/probe-scale.sh [SECONDS]   default 20. Needs nginx (nginx-light).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
swift build -c release --product nftpool >/dev/null
bin=$PWD/.build/release/nftpool
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

spec() {  # $1: tcp or http
    echo "table: probescale"
    echo "pools:"
    for pool in $(seq 0 99); do
        echo "  - name: p$pool"
        echo "    frontends: [{address: 10.99.$pool.1, port: 80}]"
        echo "    healthCheck: {type: $1, port: $((8000 + pool)), interval: 1s, fastInterval: 200ms, timeout: 500ms, rise: 1, fall: 2$([ "$1" = http ] && echo ", path: /healthz")}"
        echo "    backends:"
        for a in $(seq 1 100); do echo "      - {address: 10.30.0.$a, port: $((8000 + pool))}"; done
    done
}
ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
hz=$(getconf CLK_TCK)
printf '| check | backends | up after start | time to all up (s) | daemon CPU (cores) | VmRSS (MB) | VmHWM (MB) |\n|---|---|---|---|---|---|---|\n'
for check in tcp http; do
    spec $check > "$work/spec.yaml"
    t0=$(date +%s.%N)
    $bin run --netns $L --status-file "$work/status.json" "$work/spec.yaml" 2> "$work/daemon-$check.log" &
    daemon=$!
    # settled: every backend up in the status file
    for _ in $(seq 240); do
        up=$(python3 -c "import json;d=json.load(open('$work/status.json'));print(sum(b['health']=='up' for p in d['pools'] for b in p['backends']))" 2>/dev/null || echo 0)
        [ "$up" = 10000 ] && break
        sleep 0.5
    done
    t1=$(date +%s.%N)
    c0=$(ticks $daemon); s0=$(date +%s.%N)
    sleep "$secs"
    c1=$(ticks $daemon); s1=$(date +%s.%N)
    rss=$(awk '/VmRSS/{print $2/1024}' /proc/$daemon/status); hwm=$(awk '/VmHWM/{print $2/1024}' /proc/$daemon/status)
    cpu=$(python3 -c "print(f'{($c1 - $c0) / $hz / ($s1 - $s0):.2f}')")
    settle=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
    printf '| %s | 10000 | %s | %s | %s | %.0f | %.0f |\n' $check "$up" "$settle" "$cpu" "$rss" "$hwm"
    kill -TERM $daemon; wait $daemon || true; daemon=
    ip netns exec $L nft delete table inet probescale 2>/dev/null || true
done
