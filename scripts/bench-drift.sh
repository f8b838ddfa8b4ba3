#!/usr/bin/env bash
# bench-drift: every feature's drift between ROWS reference and ROWS current rows of 20 features
# (default 1M x 1M), ours (release build, features spread over the cores) against Evidently's
# data-drift preset in a throwaway venv, on the same files, in turns, in the same run.
set -euo pipefail
rows=${1:-1000000}
cd "$(dirname "$0")/.."
# Evidently 0.7 imports a pandas helper that pandas 3 removed.
venv_name=venv-evidently . scripts/bench-venv.sh "evidently==0.7.23" "pandas<3" numpy
"$venv/bin/python" bench/drift_gen.py "$rows" "$work"
cargo bench -p mlops-monitor --bench drift --no-run --quiet
for round in 1 2; do
    echo "== round $round"
    cargo bench -p mlops-monitor --bench drift --quiet -- "$work" | tail -1
    "$venv/bin/python" bench/drift_evidently.py "$work" | tail -1
done
echo "== per-feature figures, ours then Evidently's (last round)"
cargo bench -p mlops-monitor --bench drift --quiet -- "$work" | head -20
"$venv/bin/python" bench/drift_evidently.py "$work" | head -20
