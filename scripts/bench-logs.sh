#!/usr/bin/env bash
# Log benchmark: a generated corpus (web access logs and JSON application
# logs with request ids) pushed to skopos through the Loki push API, then
# searched through the Loki query API and by ripgrep over the same raw files.
#
#   scripts/bench-logs.sh              # 1 GB corpus, 5 runs a query
#   scripts/bench-logs.sh --gb 0.05    # quick look
#   scripts/bench-logs.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v rg >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends ripgrep
fi
if [ "${SKIP_BUILD:-0}" != "1" ]; then
    cargo build --release -p skopos -p skopos-bench
fi
exec target/release/logs-bench --skopos target/release/skopos "$@"
