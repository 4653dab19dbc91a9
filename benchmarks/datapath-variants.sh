#!/usr/bin/env bash
# What moves nftpool's data-path figure (docs/datapath.md, "Why another harness measured 0.96x"): plain
# routing (mode a) and nftpool (mode b) of benchmarks/datapath.sh, each variant changing one thing against
# the default (wrk -t1 -c32, Connection: close, one backend, per-backend counting on, conntrack flushed
# between runs). One datapath.sh run per variant, modes interleaved round by round within it.
#
# Usage (root): benchmarks/datapath-variants.sh [SECONDS] [ROUNDS] [VARIANT...]
#   default 5 s, 3 rounds, all variants: default conns1 conns4 conns128 keepalive backends3 backends10
#   nocounters noflush
# The whole run holds /tmp/nftpool-cpu.lock.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${NFTPOOL_CPU_LOCKED:-}" != 1 ]; then
    exec env NFTPOOL_CPU_LOCKED=1 flock /tmp/nftpool-cpu.lock "$0" "$@"
fi
secs=${1:-5}
rounds=${2:-3}
shift 2 || shift $# || true
variants=(${*:-default conns1 conns4 conns128 keepalive backends3 backends10 nocounters noflush})
printf '| variant | what changes | a conn/s | b conn/s | b vs a | a p99 (ms) | b p99 (ms) | a CPU/conn (us) | b CPU/conn (us) | LB cost (us) |\n'
printf '|---|---|---|---|---|---|---|---|---|---|\n'
for v in "${variants[@]}"; do
    case $v in
        default) env=(); what="wrk -t1 -c32, Connection: close, 1 backend" ;;
        conns1) env=(CONNS=1); what="1 connection in flight" ;;
        conns4) env=(CONNS=4); what="4 connections in flight" ;;
        conns128) env=(CONNS=128); what="128 connections in flight" ;;
        keepalive) env=(KEEPALIVE=1); what="keep-alive: no Connection: close (per request)" ;;
        backends3) env=(BACKENDS=3); what="3 backends in the pool" ;;
        backends10) env=(BACKENDS=10); what="10 backends in the pool" ;;
        nocounters) env=(COUNTERS=0); what="no counting rule, no counter in the dnat rule" ;;
        noflush) env=(NOFLUSH=1); what="conntrack not flushed between runs" ;;
        *) echo "unknown variant $v" >&2; exit 2 ;;
    esac
    out=$(env MODES="a b" "${env[@]}" benchmarks/datapath.sh "$secs" "$rounds" 2>/dev/null)
    echo "$out" | python3 -c '
import sys
rows = {}
for line in sys.stdin:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) >= 8 and cells[0][:2] in ("a.", "b."):
        rows[cells[0][0]] = cells
a, b = rows["a"], rows["b"]
print(f"| {sys.argv[1]} | {sys.argv[2]} | {a[1]} | {b[1]} | {b[2]} | {a[4]} | {b[4]} | {a[6]} | {b[6]} | {b[7]} |")
' "$v" "$what"
done
