#!/usr/bin/env bash
# bench-batch: ROWS rows (default 10M) x 20 features scored by logistic regression and boosted
# trees (100 trees): ours as `mlops score` scores (cargo bench -p mlops-trainer --bench batch),
# writing the input's columns with the answers (as the scikit-learn peer writes them) and the
# answers alone (as MLflow writes them); scikit-learn's predict_proba on the same Parquet file;
# and MLflow's batch path (`mlflow models predict`) on the first MLFLOW_ROWS (default 1M) rows as
# CSV; each peer in a throwaway venv, in turns, in the same run.
set -euo pipefail
rows=${1:-10000000}
mlflow_rows=${MLFLOW_ROWS:-1000000}
cd "$(dirname "$0")/.."
venv_name=venv-batch . scripts/bench-venv.sh pandas pyarrow scikit-learn mlflow
"$venv/bin/python" bench/batch_gen.py "$rows" "$work"
cargo bench -p mlops-trainer --bench batch --no-run --quiet
ours() { cargo bench -p mlops-trainer --bench batch --quiet -- "$work/batch-spec-$1.yaml" "$work/batch-train.csv" "$work/batch.parquet" "$work/batch-ours.parquet" "$2"; }
for round in 1 2; do
    echo "== round $round"
    for model in logistic gbt; do
        ours "$model" all
        ours "$model" none
    done
    "$venv/bin/python" bench/batch_peers.py sklearn "$work"
done
"$venv/bin/python" -c 'import mlflow, sklearn; print(f"mlflow {mlflow.__version__}, scikit-learn {sklearn.__version__}")'
"$venv/bin/python" bench/batch_peers.py mlflow "$work" "$mlflow_rows"
