#!/usr/bin/env bash
# Demo monitoring update: record that the deployment is being watched.
set -euo pipefail
mkdir -p "$1" && echo "watching $2" > "$1/monitoring"
echo "monitoring $2"
