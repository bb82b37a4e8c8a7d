#!/bin/bash
# Runs every benchmark against its anchors. Usage: tests/bench/run.sh BUILD_DIR [NAME...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(realpath "${1:-build}")
shift || true
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(footprint config-apply install upgrade unlock delta)
for n in "${names[@]}"; do
  echo "== bench: $n"
  "$here/$n/run.sh" "$build"
done
