#!/usr/bin/env bash
# Long fuzzing campaign: runs every target in turn for SECS seconds each (default 1800) from the
# seeded corpus, keeps libFuzzer's logs in fuzz/campaign-logs/, and prints per target the
# executions, the CPU seconds used (from /proc, so a loaded machine is reported honestly) and
# whether anything was found. Usage: fuzz/campaign.sh [SECS] [TARGET...]
set -uo pipefail
secs=${1:-1800}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode_unit_header decode_stream decode_incremental cabac_levels roundtrip_levels state_bytes model_files encode_model fl_rounds)
fuzz="$(cd "$(dirname "$0")" && pwd)"
cd "$fuzz"
[ -d corpus/decode_stream ] || ./seed-corpora.sh
mkdir -p campaign-logs
total_cpu=0
total_execs=0
for t in "${targets[@]}"; do
  cargo fuzz build -s none "$t" >/dev/null 2>&1 || { echo "$t: build failed" >&2; exit 2; }
  log="campaign-logs/$t.log"
  start=$(date +%s)
  # `time` reports the child's user+sys CPU; the wall clock alone would overstate a shared machine.
  /usr/bin/env time -f '%U %S' -o "campaign-logs/$t.cpu" \
    cargo fuzz run -s none "$t" "corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  end=$(date +%s)
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1)
  # time(1) writes "Command exited with non-zero status N" first when the fuzzer stops on a finding.
  cpu=$(tail -n 1 "campaign-logs/$t.cpu" | awk '{printf "%.0f", $1 + $2}')
  found=none
  if ls "artifacts/$t"/crash-* "artifacts/$t"/timeout-* "artifacts/$t"/oom-* >/dev/null 2>&1; then
    found="see fuzz/artifacts/$t/"
  fi
  echo "$t: wall $((end - start)) s, cpu $cpu s, execs ${execs:-?}, exit $rc, findings: $found"
  total_cpu=$((total_cpu + cpu))
  total_execs=$((total_execs + ${execs:-0}))
done
echo "total: cpu $total_cpu s ($(awk -v c="$total_cpu" 'BEGIN{printf "%.2f", c/3600}') CPU-h), execs $total_execs"
