#!/usr/bin/env bash
# `molecule test` for every role that has a molecule/ folder, all of its scenarios.
# Usage: scripts/molecule-all.sh [ROLE...]     (default: every role under roles/)
# Prints each role's name, result and time; exits non-zero if any role failed.
# Needs the lab host image (make lab-image) and a Docker engine (make engine).
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
[ -x "$repo/.venv/bin/molecule" ] && export PATH="$repo/.venv/bin:$PATH"
export ANSIBLE_CONFIG="${ANSIBLE_CONFIG:-$repo/ansible.cfg}"
export ANSIBLE_FORCE_COLOR="${ANSIBLE_FORCE_COLOR:-0}" PY_COLORS="${PY_COLORS:-0}"

command -v molecule >/dev/null || { echo "molecule-all: molecule not found (run: make venv)" >&2; exit 2; }

if [ $# -gt 0 ]; then
  roles=("$@")
else
  roles=()
  for dir in "$repo"/roles/*/molecule; do
    [ -d "$dir" ] && roles+=("$(basename "$(dirname "$dir")")")
  done
fi
[ ${#roles[@]} -gt 0 ] || { echo "molecule-all: no role has a molecule/ folder" >&2; exit 2; }

failed=()
summary=()
for role in "${roles[@]}"; do
  if [ ! -d "$repo/roles/$role/molecule" ]; then
    echo "molecule-all: roles/$role has no molecule/ folder" >&2
    failed+=("$role"); summary+=("$role: missing"); continue
  fi
  echo "== molecule: roles/$role"
  start=$SECONDS
  if (cd "$repo/roles/$role" && molecule test --all); then
    result=passed
  else
    result=FAILED; failed+=("$role")
  fi
  summary+=("$role: $result in $((SECONDS - start))s")
done

echo "== molecule summary"
printf '   %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "molecule-all: failed: ${failed[*]}" >&2
  exit 1
fi
