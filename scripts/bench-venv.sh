# Sourced by the bench scripts: the work directory and a throwaway Python venv holding the peers.
# Usage: . scripts/bench-venv.sh PACKAGE...
work=${MLOPS_BENCH_DIR:-/tmp/mlops-bench}
venv="$work/venv"
mkdir -p "$work"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet "$@"
