#!/usr/bin/env bash
# Times `nftpool apply` (netlink, one batch) against `nft -f` of the very same ruleset (what
# `nftpool render` prints), side by side in one scratch network namespace, at several sizes: a fresh
# apply (no table), and a no-change re-apply (which still reads the whole table back and compares it).
#
# Usage (root): benchmarks/apply-vs-nft.sh [POOLSxBACKENDS ...]     default: 100x100 1000x100
#   RUNS=N          timed repetitions per size and command; the median is printed (default 5; 3 from
#                   100,000 backends up)
#   NFTPOOL_BIN=P   time this binary instead of building .build/release/nftpool
#   CPU_LOCK=F      the lock shared with other work on the machine (default /tmp/nftpool-cpu.lock). The
#                   build and every measured part hold it; do not wrap this script in flock yourself.
# Never touches the host's ruleset: everything happens inside namespace nftpool-bench-$$. After timing,
# each size checks that a re-apply sends nothing and that hand edits (a slot deleted, a foreign element
# added to the backends set) are repaired by the next apply.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 0 ] && set -- 100x100 1000x100
lock=${CPU_LOCK:-/tmp/nftpool-cpu.lock}
if [ -z "${NFTPOOL_BIN:-}" ]; then
    flock "$lock" swift build -c release --product nftpool >/dev/null
    bin=.build/release/nftpool
else
    bin=$NFTPOOL_BIN
fi
ns=nftpool-bench-$$
work=$(mktemp -d)
trap 'ip netns del "$ns" 2>/dev/null || true; rm -rf "$work"' EXIT
ip netns add "$ns"
nsexec() { ip netns exec "$ns" "$@"; }

# Seconds taken by a command, to the millisecond; its output is dropped, its failure is fatal.
timed() {
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000000))
}
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
secs() { awk -v ms="$1" 'BEGIN { printf "%.3f", ms / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fx", a / b }'; }

printf '| backends | pools x backends | slot elements | nft -f (s) | nftpool apply (s) | nft / apply | re-apply, no change (s) | nft / re-apply |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for size in "$@"; do
    pools=${size%x*}; per=${size#*x}
    python3 - "$pools" "$per" > "$work/spec.yaml" <<'PY'
import sys
pools, per = int(sys.argv[1]), int(sys.argv[2])
print("table: bench\npools:")
for p in range(pools):
    print(f"  - name: p{p}\n    frontends: [{{address: 10.{p // 250}.{p % 250}.1, port: 443}}]\n    backends:")
    for b in range(per):
        n = p * per + b
        n += 1
        print(f"      - {{address: 172.{16 + n // 65536}.{(n // 256) % 256}.{n % 256}, port: 8000}}")
PY
    "$bin" render "$work/spec.yaml" > "$work/rules.nft"
    elements=$(grep -c ' : 172\.' "$work/rules.nft" || true)
    runs=${RUNS:-$([ $((pools * per)) -ge 100000 ] && echo 3 || echo 5)}
    nsexec nft delete table inet bench 2>/dev/null || true
    nft=(); apply=(); again=()
    exec 9>"$lock"
    flock 9
    for _ in $(seq "$runs"); do
        nft+=("$(timed nsexec nft -f "$work/rules.nft")")
        nsexec nft delete table inet bench
        apply+=("$(timed "$bin" apply --netns "$ns" "$work/spec.yaml")")
        again+=("$(timed "$bin" apply --netns "$ns" "$work/spec.yaml")")
        nsexec nft delete table inet bench
    done
    flock -u 9
    n=$(median "${nft[@]}"); a=$(median "${apply[@]}"); r=$(median "${again[@]}")
    printf '| %d | %s | %d | %s | %s | %s | %s | %s |\n' $((pools * per)) "$size" "$elements" \
        "$(secs "$n")" "$(secs "$a")" "$(ratio "$n" "$a")" "$(secs "$r")" "$(ratio "$n" "$r")"

    # Not timed: the re-apply compared the whole table, so it sends nothing, and it repairs hand edits.
    "$bin" apply --netns "$ns" "$work/spec.yaml" >/dev/null
    "$bin" apply --netns "$ns" "$work/spec.yaml" | grep -q 'nothing sent' \
        || { echo "a no-change re-apply sent something" >&2; exit 1; }
    nsexec nft delete element inet bench pool-p0-slots '{ 0 }'
    nsexec nft add element inet bench backends-v4 '{ 192.0.2.1 . tcp . 9 }'
    "$bin" apply --netns "$ns" "$work/spec.yaml" | grep -q '^applied' \
        || { echo "a re-apply after a hand edit did not repair it" >&2; exit 1; }
    "$bin" diff --netns "$ns" "$work/spec.yaml" >/dev/null \
        || { echo "the hand edit is still there after a re-apply" >&2; exit 1; }
    nsexec nft delete table inet bench
done
