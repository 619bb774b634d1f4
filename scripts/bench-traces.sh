#!/usr/bin/env bash
# Tracing benchmark: realistic generated traces (8 services, 3-20 spans a
# trace, ~10 attributes a span) exported to skopos over OTLP/HTTP protobuf,
# then trace-by-id latency after a restart and TraceQL searches over the hour.
#
#   scripts/bench-traces.sh                   # 1M spans
#   scripts/bench-traces.sh --spans 10000000  # the issue's 10M
#   scripts/bench-traces.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SKIP_BUILD:-0}" != "1" ]; then
    cargo build --release -p skopos -p skopos-bench
fi
exec target/release/traces-bench --skopos target/release/skopos "$@"
