#!/usr/bin/env bash
# Run every benchmark suite (bench/<suite>/run.sh). Numbers go into BENCHMARKS.md by hand,
# with the command that produced them. Usage: bench/run.sh [SUITE...]
set -euo pipefail
cd "$(dirname "$0")"
suites=("$@")
if [ ${#suites[@]} -eq 0 ]; then
  for f in */run.sh; do suites+=("$(dirname "$f")"); done
fi
for s in "${suites[@]}"; do
  [ -x "$s/run.sh" ] || { echo "bench: no runnable bench/$s/run.sh" >&2; exit 2; }
  echo "== bench: $s"
  "$s/run.sh"
done
