#!/usr/bin/env bash
# The kill -9 campaign: SIGKILLs `berth serve` KILLS times at random moments while workers push
# (monolithic and chunked blobs, ECR layer uploads), put manifests, move and delete tags; after
# each restart every acknowledged write must read back byte-exact, every tag resolve as its last
# acknowledged write (or the one in flight) left it, every cut-off upload session be gone or
# resumable, and every blob file hash to its name. Exits non-zero on the first loss.
# Usage: scripts/chaos.sh [KILLS] [WORKERS]      (default 100 kills, 8 workers)
#        PROFILE=release scripts/chaos.sh        (measure an optimised build; default: the test build)
set -euo pipefail
cd "$(dirname "$0")/.."
kills="${1:-100}"
workers="${2:-8}"
profile="${PROFILE:-dev}"
dir=debug; [ "$profile" = dev ] || dir="$profile"
cargo build --profile "$profile" -p berth -p berth-bench
BERTH_BIN="target/$dir/berth" "target/$dir/berth-bench" chaos --kills "$kills" --workers "$workers" --seed "${SEED:-$RANDOM}"
