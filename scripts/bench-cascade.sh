#!/usr/bin/env bash
# Runs the release demo N times and reports data-arrival -> serving times (ms) and their median.
set -euo pipefail
runs=${1:-10}
times=()
for _ in $(seq "$runs"); do
    t=$(./target/release/mlops demo | sed -n 's/.*data arrival → model serving: \([0-9]*\) ms.*/\1/p')
    times+=("$t")
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
median=$(printf '%s\n' "$sorted" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
echo "runs (ms): ${times[*]}"
echo "median data arrival -> serving: ${median} ms"
