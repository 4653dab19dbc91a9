#!/usr/bin/env bash
# The daemon's update latency: with POOLSxBACKENDS loaded, the time from a health decision to the kernel's
# ACK of the rewrite (one pool rebuilt, only its changed slots sent), over 500 random flips; release build,
# one scratch namespace per size. Usage (root): benchmarks/update-latency.sh [POOLSxBACKENDS ...]
# (default 100x10 1000x10 10000x10). Never touches the host's ruleset. The whole run (build and
# measurements) holds /tmp/nftpool-cpu.lock; the namespace is removed on exit, failed or not.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${NFTPOOL_CPU_LOCKED:-}" != 1 ]; then
    exec env NFTPOOL_CPU_LOCKED=1 flock /tmp/nftpool-cpu.lock "$0" "$@"
fi
[ $# -eq 0 ] && set -- 100x10 1000x10 10000x10
swift build -c release --product UpdateLatencyBench >/dev/null
ns=nftpool-lat-$$
trap 'ip netns del $ns 2>/dev/null || true' EXIT
# Columns: flip latency (decision to ACK) percentiles; "rebuild p50": of that, the pool's rebuild alone
# (RulesetBuilder.updating), the rest being the plan against the last written table, the send and the ACK;
# "load": building and applying the whole table first.
printf '| pools x backends | flips | p50 (ms) | p99 (ms) | max (ms) | rebuild p50 (ms) | messages per flip | drift after | load (s) |\n|---|---|---|---|---|---|---|---|---|\n'
for size in "$@"; do
    ip netns add $ns
    .build/release/UpdateLatencyBench $ns "${size%x*}" "${size#*x}" 500 || echo "| ${size%x*} x ${size#*x} | failed (exit $?) | | | | | | | |"
    ip netns del $ns
done
