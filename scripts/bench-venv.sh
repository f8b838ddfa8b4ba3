# Sourced by the bench scripts: the work directory and a throwaway Python venv holding the peers.
# Usage: [venv_name=NAME] . scripts/bench-venv.sh PACKAGE...   (peers that pin clashing versions
# get a venv each)
work=${MLOPS_BENCH_DIR:-/tmp/mlops-bench}
venv="$work/${venv_name:-venv}"
mkdir -p "$work"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet "$@"
