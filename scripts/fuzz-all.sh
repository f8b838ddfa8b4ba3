#!/usr/bin/env bash
# Runs every fuzz target for $1 seconds (default 600), two at a time (this machine has two cores),
# and prints each one's executions, coverage and outcome. Logs: fuzz/target/logs/<target>.log.
set -euo pipefail
seconds="${1:-600}"
cd "$(dirname "$0")/.."
targets=(data_csv data_parquet data_jsonl events spec serving artifact)
(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build -O)
mkdir -p fuzz/target/logs
run() {
    local t="$1"
    if just fuzz "$t" "$seconds" >"fuzz/target/logs/$t.log" 2>&1; then echo "$t: ok"; else echo "$t: FAILED (see fuzz/target/logs/$t.log)"; fi
}
for ((i = 0; i < ${#targets[@]}; i += 2)); do
    run "${targets[i]}" &
    if ((i + 1 < ${#targets[@]})); then run "${targets[i + 1]}" & fi
    wait
done
for t in "${targets[@]}"; do
    printf '%-13s ' "$t"
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "fuzz/target/logs/$t.log" | awk '{printf "%s ", $0}'
    grep -Eo "cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9a-zA-Z]+" "fuzz/target/logs/$t.log" | tail -1
done
