#!/usr/bin/env bash
# Benchmarks skopos against a real Prometheus on this machine: the same
# remote-write load and the same backfill file go through both, and a table of
# figures and ratios (skopos / Prometheus) is printed. See BENCHMARKS.md.
#
#   scripts/bench.sh            # full run: ~5 minutes on 2 cores, plus the build
#   scripts/bench.sh --quick    # smoke test: under a minute, plus the build
#
# A release build from scratch takes about 10 minutes on 2 cores.
#   scripts/bench.sh --help     # every knob (sizes, runs, work dir, --keep, --json)
#
# Sizes may also come from the environment: BENCH_SERIES,
# BENCH_SAMPLES_PER_SERIES, BENCH_RUNS, BENCH_BACKFILL_HOSTS,
# BENCH_BACKFILL_HOURS, BENCH_BATCH, BENCH_CONCURRENCY, BENCH_WORK_DIR.
# SKIP_BUILD=1 uses the binaries already in target/release.
set -euo pipefail
cd "$(dirname "$0")/.."

for arg in "$@"; do
    if [ "$arg" = "--help" ] || [ "$arg" = "-h" ]; then
        exec cargo run --quiet --release -p skopos-bench -- run --help
    fi
done

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    echo "== installing the Debian package prometheus (provides prometheus and promtool)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends prometheus
fi

if [ "${SKIP_BUILD:-0}" != "1" ]; then
    echo "== cargo build --release -p skopos -p skopos-bench"
    cargo build --release -p skopos -p skopos-bench
fi

rev="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    rev="$rev-dirty"
fi
export SKOPOS_GIT_REV="$rev"

exec target/release/skopos-bench run --skopos target/release/skopos "$@"
