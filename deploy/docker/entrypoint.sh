#!/bin/sh
# `IMAGE mlops-trainer [args]` runs that binary (any command on PATH works, e.g. `mlops`
# or `sh`); `IMAGE [args]` runs the default service named by $DEFAULT_SERVICE.
set -e
if [ "$#" -gt 0 ] && command -v "$1" >/dev/null 2>&1; then
  exec "$@"
fi
exec "${DEFAULT_SERVICE:?set DEFAULT_SERVICE or pass a binary name}" "$@"
