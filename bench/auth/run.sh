#!/usr/bin/env bash
# Accounts benchmark (issue 4): authenticated listing req/s with the auth cache on vs off,
# next to anonymous, on the calibredb-made 10k-book library. Needs: calibre, wrk.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null
command -v calibredb >/dev/null || scripts/ensure-host-packages.sh
exec .venv/bin/python bench/auth/bench.py "$@"
