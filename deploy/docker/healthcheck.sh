#!/bin/bash
# Usage: mlops-healthcheck [PORT]   (PORT defaults to the port of $MLOPS_LISTEN)
# Exits 0 when GET /healthz on 127.0.0.1:PORT answers 200. The runtime image has no
# curl, so this speaks HTTP/1.1 over bash's /dev/tcp.
set -euo pipefail
port="${1:-${MLOPS_LISTEN:-}}"
port="${port##*:}"
if [[ -z "$port" ]]; then
  echo "mlops-healthcheck: pass a port or set MLOPS_LISTEN" >&2
  exit 2
fi
exec 3<>"/dev/tcp/127.0.0.1/${port}"
printf 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
IFS= read -r -t 5 status <&3
[[ "$status" == "HTTP/1."?" 200"* ]]
