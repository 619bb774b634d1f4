#!/usr/bin/env bash
# PromQL query benchmark: the same 24 h of data in skopos and in a real
# Prometheus 2.42, typical dashboard range queries against both, median
# latency and peak memory with ratios; then count by (job) over 1M series.
#
#   scripts/bench-query.sh                 # full run (about 10 minutes)
#   scripts/bench-query.sh --hosts 25 --hours 2 --million 0   # quick look
#   scripts/bench-query.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v prometheus >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends prometheus
fi
if [ "${SKIP_BUILD:-0}" != "1" ]; then
    cargo build --release -p skopos -p skopos-bench
fi
exec target/release/query-bench --skopos target/release/skopos "$@"
