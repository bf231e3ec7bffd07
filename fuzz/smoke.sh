#!/usr/bin/env bash
# Runs every fuzz target for a short time (default 30 s each) from the seeded corpus; exits
# non-zero on the first crash, timeout or out-of-memory. For CI after the tests:
#   fuzz/smoke.sh 30
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); works on stable with `-s none`.
set -euo pipefail
secs=${1:-30}
fuzz="$(cd "$(dirname "$0")" && pwd)"
cd "$fuzz"
[ -d corpus/decode_stream ] || ./seed-corpora.sh
for t in decode_unit_header decode_stream decode_incremental cabac_levels roundtrip_levels state_bytes model_files encode_model fl_rounds; do
  echo "fuzz smoke: $t for ${secs}s"
  cargo fuzz run -s none "$t" "corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>&1 |
    grep -E '^(stat::number_of_executed_units|==[0-9]+== ERROR|SUMMARY|thread .* panicked)' || true
  # cargo fuzz exits non-zero on a finding; with pipefail the grep above would hide it, so re-check.
  if ls "artifacts/$t"/crash-* "artifacts/$t"/timeout-* "artifacts/$t"/oom-* >/dev/null 2>&1; then
    echo "fuzz smoke: $t found a failing input in fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
