#!/usr/bin/env bash
# Builds and runs every fuzz target (fuzz/fuzz_targets/*.rs) for SECONDS
# each (default 60) over its committed corpus, one after another, at the
# lowest CPU priority. Stops at the first crash with a non-zero exit, naming
# the target and the artifact that reproduces it. New inputs the fuzzer
# keeps land in fuzz/corpus/<target>/; minimise before committing
# (see FUZZING.md).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); the nightly-only flags it
# passes are accepted by the stable toolchain under RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${1:-60}"
shift || true
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
export RUSTC_BOOTSTRAP=1
# Safe Rust: panics are what the targets look for; the address sanitizer
# would halve the speed for little. FUZZ_SANITIZER=address to use it.
san="${FUZZ_SANITIZER:-none}"

echo "== building ${#targets[@]} fuzz targets"
nice -n 19 cargo fuzz build -s "$san"

for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "== $t: ${secs}s"
    before=$(ls "artifacts/$t" | wc -l)
    if ! nice -n 19 cargo fuzz run -s "$san" "$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        2> >(tee "artifacts/$t.log" >&2); then
        artifact=$(ls -t "artifacts/$t" | head -n 1)
        echo "FUZZ CRASH in target $t: fuzz/artifacts/$t/$artifact" >&2
        echo "reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s $san $t artifacts/$t/$artifact" >&2
        exit 1
    fi
    after=$(ls "artifacts/$t" | wc -l)
    if [ "$after" -gt "$before" ]; then
        echo "FUZZ CRASH in target $t: new artifact in fuzz/artifacts/$t/" >&2
        exit 1
    fi
done
echo "== no crash in ${#targets[@]} targets (${secs}s each)"
