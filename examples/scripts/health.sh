#!/usr/bin/env bash
# Demo health check: the "service" is healthy when its directory is writable.
set -euo pipefail
mkdir -p "$1" && test -w "$1"
echo "service healthy"
