#!/usr/bin/env bash
# Runs the Dockerfile fuzz target (fuzz/fuzz_targets/dockerfile.rs) for a bounded time.
# Usage: scripts/fuzz.sh [SECONDS]   (default 60)
#
# cargo-fuzz needs nightly-only compiler flags (-Z sanitizer); this machine has only the stable
# toolchain, so RUSTC_BOOTSTRAP=1 lets stable rustc accept them. The seed corpus is the parser's
# test corpus; crashes land in fuzz/artifacts/ and fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install --locked cargo-fuzz --version 0.13.2
fi

corpus=fuzz/corpus/dockerfile
mkdir -p "$corpus"
cp crates/berth-dockerfile/tests/corpus/*.Dockerfile "$corpus/"

export RUSTC_BOOTSTRAP=1
echo "==> fuzzing the Dockerfile parser, shell parser and linter for ${seconds}s"
cargo fuzz run --fuzz-dir fuzz dockerfile "$corpus" -- \
  -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=4096 -timeout=10 -print_final_stats=1
