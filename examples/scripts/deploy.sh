#!/usr/bin/env bash
# Demo deploy: write the release marker, or roll it back to the last backup.
set -euo pipefail
dir="$1"; environment="$2"; version="$3"; fail="${4:-false}"
mkdir -p "$dir"
if [ "$version" = "rollback" ]; then
  last=$(ls -1 "$dir/backups" 2>/dev/null | tail -n 1 || true)
  if [ -n "$last" ]; then cp "$dir/backups/$last" "$dir/current"; fi
  echo "rolled back $environment to $(cat "$dir/current" 2>/dev/null || echo nothing)"
  echo "rolled_back=true" >> "$PLAIT_OUTPUT"
  exit 0
fi
echo "deploying $version to $environment"
if [ "$fail" = "true" ]; then echo "deployment of $version failed: health gate red" >&2; exit 3; fi
echo "$version" > "$dir/current"
echo "url=http://$environment.example.internal" >> "$PLAIT_OUTPUT"
