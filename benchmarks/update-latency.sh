#!/usr/bin/env bash
# The daemon's update latency: with POOLSxBACKENDS loaded, the time from a health decision to the kernel's
# ACK of the rewrite (one pool rebuilt, only its changed slots sent), over 500 random flips; release build,
# one scratch namespace per size. Usage (root): benchmarks/update-latency.sh [POOLSxBACKENDS ...]
# (default 100x10 1000x10). Never touches the host's ruleset.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 0 ] && set -- 100x10 1000x10
swift build -c release --product UpdateLatencyBench >/dev/null
printf '| pools x backends | flips | p50 (ms) | p99 (ms) | max (ms) | messages per flip | drift after |\n|---|---|---|---|---|---|---|\n'
for size in "$@"; do
    ns=nftpool-lat-$$
    ip netns add $ns
    .build/release/UpdateLatencyBench $ns "${size%x*}" "${size#*x}" 500 || true
    ip netns del $ns
done
