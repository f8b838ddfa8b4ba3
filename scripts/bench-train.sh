#!/usr/bin/env bash
# bench-train: logistic regression and gradient-boosted trees (100 trees) on 800k x 20 training
# rows, AUC on 200k test rows; ours, scikit-learn's LogisticRegression and LightGBM in a throwaway
# venv, on the same files and inputs, in turns, in the same run. Only the fit is timed. Then the peak
# memory of a whole boosted-tree training run on 1M rows (LightGBM's process reports its own). Then two
# trainer processes against one, on two queued jobs of the whole platform.
set -euo pipefail
rows=${1:-1000000}
. "$(dirname "$0")/bench-venv.sh" pandas numpy scikit-learn lightgbm
"$venv/bin/python" bench/train_gen.py "$rows" "$work"
cargo bench -p mlops-trainer --bench train --no-run --quiet
for model in logistic gbt; do
    peer=$([ "$model" = gbt ] && echo lightgbm || echo logistic)
    for round in 1 2; do
        echo -n "mlops   ($round): "; cargo bench -p mlops-trainer --bench train --quiet -- "$work/train-spec.yaml" "$work/train.csv" "$work/test.csv" "$model"
        echo -n "peer    ($round): "; "$venv/bin/python" bench/train_peers.py "$work" "$peer"
    done
done
# Peak memory of a whole training run (read, split, preprocessed, binned, fitted, scored) on all
# 1M rows, beside the LightGBM process's peak above.
cargo bench -p mlops-trainer --bench train_memory --quiet -- "$work/train-spec.yaml" "$work/train.csv" "$work/test.csv"
# Two trainer processes against one on two queued jobs, on the real platform (release binaries).
cargo build --release --workspace --bins --quiet
cargo bench -p mlops-integration-tests --bench trainers --quiet -- "$work/train-spec.yaml" "$work/train.csv"
