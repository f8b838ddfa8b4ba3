#!/usr/bin/env bash
# bench-features: the feature store against Feast (PyPI, a throwaway venv) on the same seeded
# files, in one run. Online: ENTITIES entities (default 1,000,000) in each of three views of ten
# features, materialised by each, then requests of 1 and 100 entities x 30 features for SECONDS
# (default 10) each: ours (POST /v1/features on the deployer, NATS KV) and Feast's feature server
# (`feast serve`, SQLite online store, its local default; two workers for the two cores).
# Offline: the point-in-time training set of ENTITY_ROWS (default 1,000,000) rows against HISTORY
# (default 10,000,000) history rows: ours in process, Feast's get_historical_features (file
# offline store, Dask), each with its time and peak memory.
set -euo pipefail
entities=${1:-1000000}
history=${2:-10000000}
entity_rows=${3:-1000000}
secs=${4:-10}
cd "$(dirname "$0")/.."
venv_name=venv-feast . scripts/bench-venv.sh "feast==0.67.0"
"$venv/bin/python" bench/features_gen.py "$entities" "$history" "$entity_rows" "$work"
cargo build --release --workspace --bins --quiet
cargo bench -p mlops-integration-tests --bench features --no-run --quiet
features() { cargo bench -p mlops-integration-tests --bench features --quiet -- "$@"; }

echo "== mlops: materialise, then /v1/features"
features ours-online "$work" "$secs"

echo "== Feast $("$venv/bin/feast" version 2>/dev/null | tail -1): materialise into SQLite, then feast serve"
"$venv/bin/python" bench/features_peers.py setup "$work"
(cd "$work/feast" && exec "$venv/bin/feast" serve --host 127.0.0.1 --port 6566 --workers 2 >"$work/feast-serve.log" 2>&1) &
peer=$!
trap 'pkill -P $peer 2>/dev/null || true; kill $peer 2>/dev/null || true' EXIT
for _ in $(seq 600); do
    curl -sf -o /dev/null http://127.0.0.1:6566/health && break
    sleep 0.2
done
features http http://127.0.0.1:6566/get-online-features "$entities" "$secs"
pkill -P $peer 2>/dev/null || true
kill $peer 2>/dev/null || true

echo "== point-in-time training set: mlops"
features ours-offline "$work"
echo "== point-in-time training set: Feast (file offline store)"
"$venv/bin/python" bench/features_peers.py offline "$work"
