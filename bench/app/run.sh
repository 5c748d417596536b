#!/usr/bin/env bash
# Library server benchmark (issue 3): Lectern vs calibre-web 0.6.27 on a 10k-book library
# made by calibredb. Needs: calibre (calibredb), wrk, eatmydata (optional, faster build).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null
command -v calibredb >/dev/null || scripts/ensure-host-packages.sh
if [ ! -x .cache/bench/cw-venv/bin/cps ]; then
  python3 -m venv .cache/bench/cw-venv
  .cache/bench/cw-venv/bin/pip install -q calibreweb==0.6.27
fi
exec .venv/bin/python bench/app/bench.py "$@"
