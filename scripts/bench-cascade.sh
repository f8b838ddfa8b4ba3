#!/usr/bin/env bash
# Data arrival -> model serving: runs the release demo RUNS times on a generated churn data set of
# ROWS rows and prints each time and the median (ms).
set -euo pipefail
runs=${1:-10}
rows=${2:-10000}
data=$(mktemp --suffix=.csv)
trap 'rm -f "$data"' EXIT
./target/release/mlops sample --rows "$rows" > "$data"
times=()
for _ in $(seq "$runs"); do
    t=$(RUST_BACKTRACE=0 ./target/release/mlops demo --data "$data" | sed -n 's/.*data arrival → model serving: \([0-9]*\) ms.*/\1/p')
    times+=("$t")
done
median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
echo "rows: $rows, runs (ms): ${times[*]}"
echo "median data arrival -> serving: ${median} ms"
