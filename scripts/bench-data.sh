#!/usr/bin/env bash
# bench-data: read + validate + profile 1M rows x 20 columns from CSV and from Parquet, ours and
# pandera's (in a throwaway venv), on the same files, in the same run.
set -euo pipefail
rows=${1:-1000000}
. "$(dirname "$0")/bench-venv.sh" pandas pyarrow pandera numpy
"$venv/bin/python" bench/data_gen.py "$rows" "$work"
cargo bench -p mlops-validator --bench validate --no-run --quiet
# The machine is shared and noisy: the two take turns, twice, so a slow spell hits both.
for f in data.csv data.parquet; do
    echo "== $f ($(du -h "$work/$f" | cut -f1))"
    for round in 1 2; do
        echo -n "mlops   ($round): "; cargo bench -p mlops-validator --bench validate --quiet -- "$work/spec.yaml" "$work/$f" 3
        echo -n "pandera ($round): "; "$venv/bin/python" bench/pandera_validate.py "$work/$f" 3
    done
done
