#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs the real peers the
# tests talk to when they are missing, then runs every Rust and peer test.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "== installing Debian packages: ${missing[*]}"
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi

echo "== installing Python test dependencies"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r tests/requirements.txt

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== Rust tests"
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast

echo "== peer tests (real Prometheus, OpenTelemetry SDK)"
SKOPOS_BIN="$PWD/target/debug/skopos" python3 -m pytest -v tests/peers
