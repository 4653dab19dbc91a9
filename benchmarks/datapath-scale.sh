#!/usr/bin/env bash
# The data path against the number of services (issue 15): the short-connection benchmark of datapath.sh
# (a new TCP connection and one small HTTP request each, 32 in flight, from a client namespace across an
# LB namespace to one nginx in a backend namespace) with 1, 100, 1,000 and 10,000 pools loaded.
#
# Pool i has its own frontend 10.99.(i/250).(i%250+1):80 and one backend 10.22.(i/250).(i%250+1):80
# (round-robin, auto slots, snat: masquerade, as datapath.sh's pool). The backend namespace answers on
# every address of 10.21-23.0.0/16 (local routes), so every pool has a distinct backend address without
# 10,000 neighbours on the LB. Two traffic patterns per size:
#   one     every connection to the last pool's VIP (the worst case of any walk over the pools)
#   spread  connections round-robin over all N pools' VIPs
# Modes, measured in the same run and interleaved round by round:
#   a  plain routing across the LB to the backend, no conntrack, no NAT (one: 10.21.0.1; spread: the first N
#      addresses of 10.21/16): the baseline the LB cost is taken against, measured again next to each size
#   b  nftpool, `nftpool apply` of N pools (the table stays loaded for both patterns, deleted after)
#   c  HAProxy 2.6 in TCP mode with N `listen` sections (bind 10.98.x.y:80, one server 10.23.x.y:80 each),
#      started with RLIMIT_NOFILE raised to the hard limit (`ulimit -Hn`; a container may not raise that) and
#      maxconn 8000 as in datapath.sh, lowered to fit the limit: (limit - N - 100) / 2 (4950 at 10,000 with
#      a hard limit of 20,000; 32 connections are in flight); a size it cannot start with is reported as such
# The load generator is benchmarks/shortconn.c (wrk -t1 -c32 with `Connection: close` opens every connection
# of a thread to one address; shortconn is the same loop over a list of targets). CPU is the whole machine's
# busy time from /proc/stat over the run, per connection; LB cost = a mode's CPU per connection minus mode a's
# of the same round, size and pattern. A 3 s unmeasured run warms the machine up first. Conntrack in the LB namespace is flushed before each measured run.
# Latency is per connection, from connect() to the server's close (wrk's starts at the request, after the
# connect), so its p50 is about twice wrk's for the same traffic.
#
# Usage (root): benchmarks/datapath-scale.sh [SECONDS] [ROUNDS] [POOLS...]   default 5 s, 3 rounds, 1 100 1000 10000
# Env: CONNS (default 32) connections in flight; MODES (default "a b c"); RATE: an open loop at this many
# connections a second (shortconn's RATE; CONNS is then the most in flight) instead of the closed loop.
# Needs nginx (nginx-light), haproxy, conntrack, cc. Release build. Namespaces nftpool-dps-$$-*, removed on
# exit. The whole run holds /tmp/nftpool-cpu.lock (build and measurements).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${NFTPOOL_CPU_LOCKED:-}" != 1 ]; then
    exec env NFTPOOL_CPU_LOCKED=1 flock /tmp/nftpool-cpu.lock "$0" "$@"
fi
secs=${1:-5}
rounds=${2:-3}
shift 2 || shift $# || true
sizes=(${*:-1 100 1000 10000})
conns=${CONNS:-32}
modes=${MODES:-a b c}
for tool in nginx haproxy conntrack cc python3; do
    command -v $tool >/dev/null || { echo "error: $tool missing: apt-get install -y nginx-light haproxy conntrack gcc" >&2; exit 1; }
done
swift build -c release --product nftpool >/dev/null
bin=$PWD/.build/release/nftpool
work=$(mktemp -d)
cc -O2 -o "$work/shortconn" benchmarks/shortconn.c

p=nftpool-dps-$$
C=$p-client L=$p-lb B=$p-backend
cleanup() {
    for ns in $C $L $B; do
        ip netns pids $ns 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del $ns 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap "exit 130" INT TERM

for ns in $C $L $B; do ip netns add $ns; done
ip link add c0 netns $C type veth peer name l0 netns $L
ip link add e0 netns $B type veth peer name l1 netns $L
ip -n $C -batch - <<EOT
link set lo up
link set c0 up
addr add 10.10.0.2/16 dev c0
route add default via 10.10.0.1
EOT
ip -n $L -batch - <<EOT
link set lo up
link set l0 up
link set l1 up
addr add 10.10.0.1/16 dev l0
addr add 10.20.0.1/24 dev l1
route add 10.21.0.0/16 via 10.20.0.11
route add 10.22.0.0/16 via 10.20.0.11
route add 10.23.0.0/16 via 10.20.0.11
route add local 10.98.0.0/16 dev lo
EOT
ip -n $B -batch - <<EOT
link set lo up
link set e0 up
addr add 10.20.0.11/24 dev e0
route add default via 10.20.0.1
route add local 10.21.0.0/16 dev lo
route add local 10.22.0.0/16 dev lo
route add local 10.23.0.0/16 dev lo
EOT
ip netns exec $L sysctl -qw net.ipv4.ip_forward=1
ip netns exec $C sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
for ns in $B $L; do ip netns exec $ns sysctl -qw net.core.somaxconn=4096 net.ipv4.tcp_max_syn_backlog=4096; done

cat > "$work/nginx.conf" <<EOT
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    server {
        listen 80 backlog=4096 reuseport;
        location / { return 200 "ok\n"; }
    }
}
EOT
ip netns exec $B nginx -c "$work/nginx.conf"

maxn=$(printf '%s\n' "${sizes[@]}" | sort -n | tail -1)
# addr NET I: the I-th address of 10.NET/16 (250 per /24, .1 to .250)
fdlimit=$(ulimit -Hn)
[ "$fdlimit" = unlimited ] && fdlimit=1048576
python3 - "$work" "$maxn" "$fdlimit" "${sizes[@]}" <<'PY'
import json, sys
work, maxn, fdlimit, sizes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), [int(s) for s in sys.argv[4:]]
addr = lambda net, i: f"10.{net}.{i // 250}.{i % 250 + 1}"
with open(f"{work}/targets-a-one", "w") as f: f.write(f"{addr(21, 0)} 80\n")
for n in sizes:
    with open(f"{work}/targets-a-spread-{n}", "w") as f: f.writelines(f"{addr(21, i)} 80\n" for i in range(n))
    spec = {"table": "dpscale", "pools": [
        {"name": f"p{i}", "frontends": [{"address": addr(99, i), "port": 80}], "scheduler": "round-robin",
         "snat": "masquerade", "backends": [{"address": addr(22, i)}]} for i in range(n)]}
    json.dump(spec, open(f"{work}/pools-{n}.json", "w"))
    with open(f"{work}/targets-b-one-{n}", "w") as f: f.write(f"{addr(99, n - 1)} 80\n")
    with open(f"{work}/targets-b-spread-{n}", "w") as f: f.writelines(f"{addr(99, i)} 80\n" for i in range(n))
    with open(f"{work}/targets-c-one-{n}", "w") as f: f.write(f"{addr(98, n - 1)} 80\n")
    with open(f"{work}/targets-c-spread-{n}", "w") as f: f.writelines(f"{addr(98, i)} 80\n" for i in range(n))
    with open(f"{work}/haproxy-{n}.cfg", "w") as f:
        f.write(f"global\n    maxconn {min(8000, (fdlimit - n - 100) // 2)}\ndefaults\n    mode tcp\n    timeout connect 2s\n"
                "    timeout client 10s\n    timeout server 10s\n")
        for i in range(n):
            f.write(f"listen p{i}\n    bind {addr(98, i)}:80\n    server s {addr(23, i)}:80\n")
PY

busy_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
hz=$(getconf CLK_TCK)
echo "mode,pools,pattern,round,requests,rate,p50_ms,p99_ms,cpu_us_per_conn,errors" > "$work/runs.csv"
[ -n "${RATE:-}" ] && echo "open loop: ${RATE} connections a second offered, at most $conns in flight" >&2
measure() { # MODE POOLS PATTERN ROUND TARGETS
    ip netns exec $C "$work/shortconn" "$5" $conns 1 ${RATE:-} >/dev/null
    ip netns exec $L conntrack -F >/dev/null 2>&1 || true
    local j0 j1 out
    j0=$(busy_jiffies)
    out=$(ip netns exec $C "$work/shortconn" "$5" $conns $secs ${RATE:-})
    j1=$(busy_jiffies)
    eval "local $out"
    local cpu
    cpu=$(python3 -c "print(f'{($j1 - $j0) / $hz * 1e6 / max($requests, 1):.1f}')")
    echo "$1,$2,$3,$4,$requests,$rate,$p50_ms,$p99_ms,$cpu,$errors" >> "$work/runs.csv"
    echo "round $4 mode $1 pools $2 $3: $rate conn/s, p50 $p50_ms ms, p99 $p99_ms ms, $cpu us CPU/conn, $errors errors, ${late:-0} late starts" >&2
}
ip netns exec $C "$work/shortconn" "$work/targets-a-one" $conns 3 >/dev/null
for round in $(seq 1 "$rounds"); do
    for n in "${sizes[@]}"; do
        if [[ " $modes " == *" a "* ]]; then
            measure a $n one $round "$work/targets-a-one"
            measure a $n spread $round "$work/targets-a-spread-$n"
        fi
        if [[ " $modes " == *" b "* ]]; then
            t0=$(date +%s.%N)
            $bin apply --netns $L "$work/pools-$n.json" >/dev/null
            echo "nftpool apply of $n pools: $(python3 -c "print(f'{$(date +%s.%N) - $t0:.2f}')") s" >&2
            measure b $n one $round "$work/targets-b-one-$n"
            measure b $n spread $round "$work/targets-b-spread-$n"
            $bin delete --netns $L "$work/pools-$n.json" >/dev/null
        fi
        if [[ " $modes " == *" c "* ]]; then
            if (ulimit -n "$fdlimit" && ip netns exec $L haproxy -D -p "$work/haproxy.pid" -f "$work/haproxy-$n.cfg") 2>"$work/haproxy.err"; then
                for _ in $(seq 100); do
                    [ "$(ip netns exec $L ss -Hltn | wc -l)" -ge "$n" ] && break
                    sleep 0.1
                done
                measure c $n one $round "$work/targets-c-one-$n"
                measure c $n spread $round "$work/targets-c-spread-$n"
                kill "$(cat "$work/haproxy.pid")"
                while kill -0 "$(cat "$work/haproxy.pid")" 2>/dev/null; do sleep 0.1; done
            else
                echo "haproxy with $n frontends did not start: $(head -3 "$work/haproxy.err" | tr '\n' ' ')" >&2
                echo "c,$n,one,$round,0,0,0,0,0,did not start" >> "$work/runs.csv"
            fi
        fi
        ip netns exec $L conntrack -F >/dev/null 2>&1 || true
    done
done

python3 - "$work/runs.csv" "$secs" "$rounds" "$conns" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = statistics.median
base = {(r["round"], r["pools"], r["pattern"]): float(r["cpu_us_per_conn"]) for r in rows if r["mode"] == "a"}
arate = {(r["pools"], r["pattern"]): med(float(x["rate"]) for x in rows if x["mode"] == "a" and
         (x["pools"], x["pattern"]) == (r["pools"], r["pattern"])) for r in rows if r["mode"] == "a"}
print(f"{sys.argv[3]} rounds x {sys.argv[2]} s per run, interleaved; shortconn, {sys.argv[4]} connections in flight, "
      "Connection: close; medians over rounds; LB cost = CPU per connection minus mode a's of the same round, size and pattern.\n")
print("| mode | pools | traffic | conn/s | vs a | p50 (ms) | p99 (ms) | CPU per conn (us) | LB cost per conn (us) | LB cost vs 1 pool |")
print("|---|---|---|---|---|---|---|---|---|---|")
names = {"a": "a. plain routing", "b": "b. nftpool", "c": "c. HAProxy"}
keys = []
for r in rows:
    k = (r["mode"], int(r["pools"]), r["pattern"])
    if k not in keys: keys.append(k)
keys.sort(key=lambda k: (k[2], "abc".index(k[0]), k[1]))
cost1 = {}
for m, n, pat in keys:
    rs = [r for r in rows if (r["mode"], int(r["pools"]), r["pattern"]) == (m, n, pat)]
    if any(r["errors"] == "did not start" for r in rs):
        print(f"| {names[m]} | {n} | {pat} | did not start | | | | | | |"); continue
    rate, p50, p99 = (med(float(r[k]) for r in rs) for k in ("rate", "p50_ms", "p99_ms"))
    cpu = med(float(r["cpu_us_per_conn"]) for r in rs)
    errs = sum(int(r["errors"]) for r in rs if r["errors"].isdigit())
    if m == "a":
        print(f"| {names[m]} | {n} | {pat} | {rate:.0f} | 1.00x | {p50:.2f} | {p99:.2f} | {cpu:.1f} | | |"); continue
    cost = med(float(r["cpu_us_per_conn"]) - base[(r["round"], r["pools"], pat)] for r in rs)
    cost1.setdefault((m, pat), cost)
    flat = f"{cost / cost1[(m, pat)]:.2f}x" if cost1[(m, pat)] > 0 else ""
    note = f" ({errs} errors)" if errs else ""
    print(f"| {names[m]} | {n} | {pat} | {rate:.0f}{note} | {rate / arate[(str(n), pat)]:.2f}x | {p50:.2f} | {p99:.2f} | {cpu:.1f} | {cost:.1f} | {flat} |")
PY
[ -z "${RATE:-}${MODES:-}${CONNS:-}" ] && cp "$work/runs.csv" benchmarks/datapath-scale-last-runs.csv
true
