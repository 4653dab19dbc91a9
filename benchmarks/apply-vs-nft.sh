#!/usr/bin/env bash
# Times `nftpool apply` (netlink, one batch) against `nft -f` of the very same ruleset (what
# `nftpool render` prints), side by side in one scratch network namespace, at several sizes.
# Usage (root): benchmarks/apply-vs-nft.sh [POOLSxBACKENDS ...]   default: 100x10 100x100
# Never touches the host's ruleset: everything happens inside namespace nftpool-bench-$$.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-100x10 100x100}")
[ $# -eq 0 ] && sizes=(100x10 100x100)
swift build -c release >/dev/null
bin=.build/release/nftpool
ns=nftpool-bench-$$
work=$(mktemp -d)
trap 'ip netns del "$ns" 2>/dev/null || true; rm -rf "$work"' EXIT
ip netns add "$ns"

now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.3f}')"; }

printf '| backends | pools x backends | slot elements | nftpool apply (s) | nft -f (s) | nft / apply | re-apply, no change (s) |\n'
printf '|---|---|---|---|---|---|---|\n'
for size in "${sizes[@]}"; do
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
    $bin render "$work/spec.yaml" > "$work/rules.nft"
    elements=$(grep -c ' : 172\.' "$work/rules.nft" || true)
    ip netns exec "$ns" nft delete table inet bench 2>/dev/null || true
    t0=$(now); $bin apply --netns "$ns" "$work/spec.yaml" >/dev/null; t1=$(now)
    t2=$(now); $bin apply --netns "$ns" "$work/spec.yaml" >/dev/null; t3=$(now)
    ip netns exec "$ns" nft delete table inet bench
    t4=$(now); ip netns exec "$ns" nft -f "$work/rules.nft"; t5=$(now)
    ip netns exec "$ns" nft delete table inet bench
    apply=$(secs "$t0" "$t1"); nft=$(secs "$t4" "$t5"); again=$(secs "$t2" "$t3")
    ratio=$(python3 -c "print(f'{$nft / $apply:.1f}x')")
    printf '| %d | %s | %d | %s | %s | %s | %s |\n' $((pools * per)) "$size" "$elements" "$apply" "$nft" "$ratio" "$again"
done
