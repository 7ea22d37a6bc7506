#!/usr/bin/env bash
# Demo backup: copy the "current release" marker into a timestamped backup file.
set -euo pipefail
dir="$1"; run_id="$2"
mkdir -p "$dir/backups" "$dir/tmp-$run_id"
stamp=$(date +%Y%m%d_%H%M%S)
cp "$dir/current" "$dir/backups/release-$stamp" 2>/dev/null || echo "none" > "$dir/backups/release-$stamp"
echo "backup written to $dir/backups/release-$stamp"
echo "path=$dir/backups/release-$stamp" >> "$PLAIT_OUTPUT"
