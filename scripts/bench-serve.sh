#!/usr/bin/env bash
# bench-serve: single-row inference under 32 concurrent requests, SECONDS each (default 10).
# Ours over OIP REST and gRPC (release binaries, the whole platform), with no prediction logged as
# the peers log none, and with every one logged to JetStream (log_sample 1, drops counted); then MLflow's `models serve` and MLServer with the equivalent scikit-learn model, each in a
# throwaway venv, on the same rows with the same client, in the same run. Also resident memory.
set -euo pipefail
secs=${1:-10}
cd "$(dirname "$0")/.."
work=${MLOPS_BENCH_DIR:-/tmp/mlops-bench}
mkdir -p "$work"
python3 bench/serve_gen.py 20000 "$work"
cargo build --release --workspace --bins --quiet
cargo bench -p mlops-integration-tests --bench serve --no-run --quiet
serve() { cargo bench -p mlops-integration-tests --bench serve --quiet -- "$@"; }

# Resident memory of a process and all its descendants, in MB.
tree_rss() {
    local pids=$1 all=$1 next
    while [ -n "$pids" ]; do
        next=$(for p in $pids; do pgrep -P "$p" || true; done | tr '\n' ' ')
        all="$all $next"
        pids=$next
    done
    ps -o rss= -p "$(echo $all | tr ' ' ',' | sed 's/,*$//')" | awk '{s += $1} END {printf "%.1f", s / 1024}'
}

# Waits until URL answers 200, up to 120 s.
wait_up() {
    for _ in $(seq 1200); do
        if curl -sf -o /dev/null "$1"; then return 0; fi
        sleep 0.1
    done
    echo "$1 did not come up" >&2
    return 1
}

echo "== mlops (OIP REST and gRPC), predictions not logged (the peers log none)"
serve ours "$work/serve-spec-nolog.yaml" "$work/serve.csv" "$secs"
echo "== mlops (OIP REST and gRPC), every prediction logged to JetStream (log_sample 1)"
serve ours "$work/serve-spec.yaml" "$work/serve.csv" "$secs"

echo "== mlops serving the same scikit-learn pipeline as the peers, exported to ONNX (skl2onnx) and imported; predictions not logged"
venv_name=venv-onnx . scripts/bench-venv.sh -r scripts/onnx-requirements.txt
"$venv/bin/python" bench/serve_peers.py onnx "$work" 0
serve ours "$work/serve-spec-onnx.yaml" "$work/serve.csv" "$secs" "$work/bench.onnx"

echo "== MLflow models serve"
venv_name=venv-mlflow . scripts/bench-venv.sh mlflow scikit-learn pandas
"$venv/bin/python" bench/serve_peers.py mlflow "$work" 0
"$venv/bin/mlflow" --version
PATH="$venv/bin:$PATH" "$venv/bin/mlflow" models serve -m "$work/mlflow-model" -h 127.0.0.1 -p 5011 --env-manager local >"$work/mlflow.log" 2>&1 &
peer=$!
trap 'kill $peer 2>/dev/null || true' EXIT
wait_up http://127.0.0.1:5011/ping
echo "mlflow         $(tree_rss $peer) MB resident with one model, before load"
serve mlflow http://127.0.0.1:5011 "$work/serve.csv" "$secs"
kill $peer; wait $peer 2>/dev/null || true

echo "== MLServer"
# MLServer 1.7 workers fail under uvloop 0.22 ("no current event loop"): pin the one it was released with.
venv_name=venv-mlserver . scripts/bench-venv.sh mlserver mlserver-sklearn scikit-learn pandas "uvloop<0.22"
"$venv/bin/python" bench/serve_peers.py mlserver "$work" 5021
"$venv/bin/mlserver" --version
(cd "$work/mlserver" && PATH="$venv/bin:$PATH" exec "$venv/bin/mlserver" start . >"$work/mlserver.log" 2>&1) &
peer=$!
wait_up http://127.0.0.1:5021/v2/models/bench/ready
echo "mlserver       $(tree_rss $peer) MB resident with one model, before load"
serve mlserver http://127.0.0.1:5021 bench "$work/serve.csv" "$secs"
kill $peer; wait $peer 2>/dev/null || true
