#!/usr/bin/env bash
# Release benchmark on the lab (issue 7): rollout time 3 hosts vs 1, failed requests per
# good and bad update under load, rollback time with the registry stopped.
#   bench/release/run.sh        (needs the lab: make lab; provisions pi, server, nas)
# Leaves nas provisioned: `appliance lab reset nas` makes it bare again.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p bench/results
appliance lab up >/dev/null
appliance provision pi,server,nas >bench/results/release-provision.log 2>&1
python bench/release/bench.py | tee bench/results/release.md
