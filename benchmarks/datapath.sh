#!/usr/bin/env bash
# The data-path benchmark: short connections (a new TCP connection and one small HTTP request each: wrk
# with `Connection: close` against nginx) from a client namespace, across an LB namespace, to one backend
# namespace, in four modes measured in the same run, interleaved round by round:
#   a  plain routing across the LB, no load balancing: the physical limit of this topology
#   t  the same routing with connection tracking switched on (one `ct state` rule), no NAT: what any
#      NAT load balancer in the kernel pays before doing anything (shown for reference)
#   b  nftpool's VIP (round-robin pool, snat: masquerade, as rulesets/kube-apiserver.yaml)
#   c  HAProxy in TCP mode in the LB namespace
#   d  IPVS (ipvsadm, NAT mode), when ipvsadm is installed
# Each mode reaches the backend on its own address and conntrack in the LB namespace is flushed between
# runs: TIME_WAIT entries of one mode would otherwise clash with the next mode's DNAT tuples. Only the
# mode under test is configured during its run: the nftpool table is applied before and deleted after
# (so mode a runs with no conntrack at all), haproxy is started and stopped, the IPVS service added and
# removed. Per mode: rate, p50/p99 latency (wrk), and the whole machine's CPU time per connection from
# /proc/stat over the run. The LB's own cost is a mode's CPU per connection minus mode a's.
#
# Usage (root): benchmarks/datapath.sh [SECONDS_PER_RUN] [ROUNDS]   default: 5 s, 3 rounds
# Needs: wrk nginx-light haproxy conntrack (ipvsadm optional), gnuplot for the plot (optional).
# Everything lives in namespaces nftpool-dp-$$-*; the host's ruleset and interfaces are never touched.
# The whole run (build and measurements) holds /tmp/nftpool-cpu.lock.
#
# Variants, to find what moves the figures (docs/datapath.md, "Why another harness measured 0.96x"); each
# changes one thing, defaults as above. A run with any of them set does not overwrite the last-runs CSV or
# the plot:
#   MODES="a b"    the modes to run (default: a t b c, and d where IPVS works)
#   CONNS=N        connections in flight (wrk -cN; default 32)
#   KEEPALIVE=1    no `Connection: close`: wrk keeps each connection for many requests
#   BACKENDS=N     the nftpool pool has N backends (10.20.1.1..N, all on the one nginx; default 1)
#   COUNTERS=0     after apply, flush nftpool's filter-forward/filter-output chains (the per-backend counting
#                  rule) and remove the `counter` from its pool chain's rule
#   NOFLUSH=1      do not flush the LB's conntrack between runs (entries of earlier runs stay, in TIME_WAIT)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${NFTPOOL_CPU_LOCKED:-}" != 1 ]; then
    exec env NFTPOOL_CPU_LOCKED=1 flock /tmp/nftpool-cpu.lock "$0" "$@"
fi
secs=${1:-5}
rounds=${2:-3}
conns=${CONNS:-32}
backends=${BACKENDS:-1}
variant=0
for v in MODES CONNS KEEPALIVE BACKENDS COUNTERS NOFLUSH; do [ -n "${!v:-}" ] && variant=1; done
close_hdr=(-H "Connection: close")
[ "${KEEPALIVE:-0}" = 1 ] && close_hdr=()
flush_ct() { [ "${NOFLUSH:-0}" = 1 ] || ip netns exec $L conntrack -F >/dev/null 2>&1 || true; }
swift build -c release >/dev/null
bin=$PWD/.build/release/nftpool
for tool in wrk nginx haproxy conntrack; do
    command -v $tool >/dev/null || { echo "error: $tool missing: apt-get install -y wrk nginx-light haproxy conntrack" >&2; exit 1; }
done
have_ipvs=0
command -v ipvsadm >/dev/null && have_ipvs=1

p=nftpool-dp-$$
C=$p-client L=$p-lb B=$p-backend
work=$(mktemp -d)
cleanup() {
    for ns in $C $L $B; do
        ip netns pids $ns 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del $ns 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

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
addr add 10.99.0.1/32 dev lo
addr add 10.99.0.2/32 dev lo
addr add 10.99.0.3/32 dev lo
EOT
ip -n $B -batch - <<EOT
link set lo up
link set e0 up
addr add 10.20.0.11/24 dev e0
addr add 10.20.0.12/24 dev e0
addr add 10.20.0.13/24 dev e0
addr add 10.20.0.14/24 dev e0
addr add 10.20.0.15/24 dev e0
route add default via 10.20.0.1
route add local 10.20.1.0/24 dev lo
EOT
ip netns exec $L sysctl -qw net.ipv4.ip_forward=1
if [ $have_ipvs -eq 1 ] && ! ip netns exec $L ipvsadm -Ln >/dev/null 2>&1; then
    echo "note: IPVS is not available in this kernel (ipvsadm: $(ip netns exec $L ipvsadm -Ln 2>&1 | head -1)); mode d skipped" >&2
    have_ipvs=0
fi
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

cat > "$work/haproxy.cfg" <<EOT
global
    maxconn 8000
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend vip
    bind 10.99.0.2:80
    default_backend web
backend web
    server b0 10.20.0.13:80
EOT

cat > "$work/pool.yaml" <<EOT
table: dpbench
pools:
  - name: web
    frontends: [{address: 10.99.0.1, port: 80}]
    scheduler: round-robin
    snat: masquerade
EOT
if [ "$backends" = 1 ]; then
    echo "    backends: [{address: 10.20.0.12}]" >> "$work/pool.yaml"
else
    echo "    backends:" >> "$work/pool.yaml"
    for i in $(seq 1 "$backends"); do echo "      - {address: 10.20.1.$i}" >> "$work/pool.yaml"; done
    ip netns exec $L ip route add 10.20.1.0/24 via 10.20.0.11
fi

target() {
    case $1 in
        a) echo http://10.20.0.11/ ;;
        t) echo http://10.20.0.15/ ;;
        b) echo http://10.99.0.1/ ;;
        c) echo http://10.99.0.2/ ;;
        d) echo http://10.99.0.3/ ;;
    esac
}
setup() {
    case $1 in
        t) ip netns exec $L nft -f - <<<'table ip dpct { chain ctonly { type filter hook forward priority 0; ct state established counter accept; }; }' ;;
        b) $bin apply --netns $L "$work/pool.yaml" >/dev/null
           if [ "${COUNTERS:-1}" = 0 ]; then
               ip netns exec $L nft flush chain inet dpbench filter-forward
               ip netns exec $L nft flush chain inet dpbench filter-output
               rule=$(ip netns exec $L nft list chain inet dpbench pool-web | grep 'dnat ip to' | sed 's/ counter packets [0-9]* bytes [0-9]*//')
               ip netns exec $L nft flush chain inet dpbench pool-web
               echo "add rule inet dpbench pool-web $rule" | ip netns exec $L nft -f -
           fi ;;
        c) ip netns exec $L haproxy -D -p "$work/haproxy.pid" -f "$work/haproxy.cfg"; sleep 0.3 ;;
        d) ip netns exec $L ipvsadm -A -t 10.99.0.3:80 -s rr
           ip netns exec $L ipvsadm -a -t 10.99.0.3:80 -r 10.20.0.14:80 -m ;;
    esac
    true
}
teardown() {
    case $1 in
        t) ip netns exec $L nft delete table ip dpct ;;
        b) $bin delete --netns $L "$work/pool.yaml" >/dev/null ;;
        c) kill "$(cat "$work/haproxy.pid")"; sleep 0.3 ;;
        d) ip netns exec $L ipvsadm -C ;;
    esac
    flush_ct
}
busy_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }

modes=(a t b c)
[ $have_ipvs -eq 1 ] && modes+=(d)
[ -n "${MODES:-}" ] && read -r -a modes <<<"$MODES"
echo "mode,round,requests,rate,p50_ms,p99_ms,cpu_us_per_conn,errors" > "$work/runs.csv"
# wrk's latency lines look like "50%  1.23ms" / "99%  850.00us" / "1.02s"
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v} else {sub(/s$/,"",v); print v*1000}}'; }
for round in $(seq 1 "$rounds"); do
    for m in "${modes[@]}"; do
        setup $m
        # A short warm-up, so every mode starts with its caches and the backend's accept queue warm.
        ip netns exec $C wrk -t1 -c$conns -d1s "${close_hdr[@]}" "$(target $m)" >/dev/null
        flush_ct
        j0=$(busy_jiffies)
        out=$(ip netns exec $C wrk -t1 -c$conns -d${secs}s "${close_hdr[@]}" --latency "$(target $m)")
        j1=$(busy_jiffies)
        teardown $m
        requests=$(echo "$out" | awk '/requests in/{print $1}')
        rate=$(echo "$out" | awk '/Requests\/sec/{print $2}')
        p50=$(echo "$out" | awk '$1=="50%"{print $2}' | to_ms)
        p99=$(echo "$out" | awk '$1=="99%"{print $2}' | to_ms)
        errors=$(echo "$out" | awk '/Socket errors|Non-2xx/{s=s $0 ";"} END{print s}' | tr ',' ' ')
        hz=$(getconf CLK_TCK)
        cpu=$(python3 -c "print(f'{($j1 - $j0) / $hz * 1e6 / max($requests, 1):.1f}')")
        echo "$m,$round,$requests,$rate,$p50,$p99,$cpu,$errors" >> "$work/runs.csv"
        echo "round $round mode $m: $rate conn/s, p50 ${p50} ms, p99 ${p99} ms, ${cpu} us CPU/conn ${errors}" >&2
    done
done

python3 - "$work/runs.csv" "$secs" "$rounds" "$conns" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
names = {"a": "a. plain routing (limit)", "t": "t. routing + conntrack, no NAT", "b": "b. nftpool VIP", "c": "c. HAProxy (TCP mode)", "d": "d. IPVS (NAT)"}
agg = {}
for m in sorted({r["mode"] for r in rows}):
    rs = [r for r in rows if r["mode"] == m]
    med = lambda k: statistics.median(float(r[k]) for r in rs)
    agg[m] = dict(rate=med("rate"), p50=med("p50_ms"), p99=med("p99_ms"), cpu=med("cpu_us_per_conn"),
                  errors=sum(1 for r in rs if r["errors"].strip()))
if "a" not in agg:  # MODES without a: no baseline to compare with
    for m, v in agg.items(): print(m, v)
    sys.exit(0)
a = agg["a"]
print(f"{sys.argv[3]} rounds x {sys.argv[2]} s per mode, interleaved; wrk -t1 -c{sys.argv[4]}, Connection: close; medians over rounds.\n")
print("| mode | conn/s | vs a | p50 (ms) | p99 (ms) | p99 vs a | CPU per conn (us) | LB cost per conn (us) | LB cost vs HAProxy |")
print("|---|---|---|---|---|---|---|---|---|")
haproxy_cost = agg["c"]["cpu"] - a["cpu"] if "c" in agg else None
for m, v in sorted(agg.items(), key=lambda kv: "atbcd".index(kv[0])):
    cost = v["cpu"] - a["cpu"]
    vs_h = "" if m == "a" or not haproxy_cost else f"{cost / haproxy_cost:.2f}x"
    print(f"| {names[m]} | {v['rate']:.0f} | {v['rate'] / a['rate']:.2f}x | {v['p50']:.2f} | {v['p99']:.2f} | "
          f"{v['p99'] / a['p99']:.2f}x | {v['cpu']:.1f} | {'' if m == 'a' else f'{cost:.1f}'} | {vs_h} |")
if any(v["errors"] for v in agg.values()):
    print("\nruns with socket errors or non-2xx answers:", {m: v["errors"] for m, v in agg.items() if v["errors"]})
short = {"a": "a routing", "t": "t +conntrack", "b": "b nftpool", "c": "c HAProxy", "d": "d IPVS"}
with open(sys.argv[1] + ".agg", "w") as f:
    for m, v in sorted(agg.items(), key=lambda kv: "atbcd".index(kv[0])):
        f.write(f'"{short[m]}" {v["rate"]:.0f} {v["cpu"]:.1f}\n')
PY
[ $variant = 1 ] && exit 0
cp "$work/runs.csv" benchmarks/datapath-last-runs.csv
if command -v gnuplot >/dev/null; then
    gnuplot <<EOT
set terminal pngcairo size 900,420 noenhanced
set output "docs/datapath.png"
set multiplot layout 1,2 title "Short connections through the LB namespace (medians of $rounds rounds)"
set style fill solid 0.7
set boxwidth 0.6
set xtics font ",9"
set yrange [0:*]
set title "connections per second"
plot "$work/runs.csv.agg" using 0:2:xtic(1) with boxes notitle
set title "machine CPU per connection (us)"
plot "$work/runs.csv.agg" using 0:3:xtic(1) with boxes notitle
unset multiplot
EOT
    echo "plot: docs/datapath.png" >&2
fi
