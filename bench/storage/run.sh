#!/usr/bin/env bash
# Storage and shared cache benchmark (issue 4): S3 cover redirects vs local covers, the
# covers upload (first run, re-run), the Redis second tier. Needs: calibre, wrk,
# redis-server (scripts/ensure-host-packages.sh); moto comes with the dev dependencies.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
command -v wrk >/dev/null || scripts/ensure-host-packages.sh wrk
command -v redis-server >/dev/null || scripts/ensure-host-packages.sh redis-server
command -v calibredb >/dev/null || scripts/ensure-host-packages.sh
exec .venv/bin/python bench/storage/bench.py "$@"
