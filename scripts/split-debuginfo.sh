#!/usr/bin/env bash
# Copies each release binary into OUT_DIR without its debug info, which goes into OUT_DIR/BINARY.debug
# beside it, named in the binary by .gnu_debuglink (GDB's separate debug files). The binary keeps
# its symbol table, so a panic's backtrace still names functions; with the .debug file beside it
# (or in a .debug/ directory there) the standard library's symboliser adds file:line too.
#   scripts/split-debuginfo.sh OUT_DIR target/release/mlops target/release/mlops-deployer ...
set -euo pipefail
if [ "$#" -lt 2 ]; then
    echo "usage: $0 OUT_DIR BINARY..." >&2
    exit 2
fi
command -v objcopy >/dev/null || { echo "objcopy is missing: install binutils" >&2; exit 1; }
out=$1
shift
mkdir -p "$out"
for binary in "$@"; do
    [ -f "$binary" ] || { echo "no binary at $binary: build it first (cargo build --release)" >&2; exit 1; }
    name=$(basename "$binary")
    cp "$binary" "$out/$name"
    # The link is made from inside OUT_DIR, so it records the bare file name.
    (
        cd "$out"
        objcopy --only-keep-debug "$name" "$name.debug"
        chmod -x "$name.debug"
        objcopy --strip-debug --add-gnu-debuglink="$name.debug" "$name"
    )
done
