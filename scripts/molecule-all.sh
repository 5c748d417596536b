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

# MOLECULE_SCENARIOS=all runs every scenario of each role (make molecule-full); the
# default runs each role's `default` scenario (ON, idempotence, OFF): what make test needs.
# MOLECULE_JOBS roles run at once (default 2); each role's log goes to .cache/molecule/.
scope=(); [ "${MOLECULE_SCENARIOS:-default}" = all ] && scope=(--all)
jobs=${MOLECULE_JOBS:-2}
logs="$repo/.cache/molecule"; mkdir -p "$logs"

run_role() {
  local role=$1 start=$SECONDS rc=0
  if [ ! -d "$repo/roles/$role/molecule" ]; then
    echo "$role: missing molecule/" > "$logs/$role.result"; return 1
  fi
  (cd "$repo/roles/$role" && molecule test "${scope[@]}") > "$logs/$role.log" 2>&1 || rc=$?
  echo "$role: $([ $rc = 0 ] && echo passed || echo FAILED) in $((SECONDS - start))s" > "$logs/$role.result"
  return $rc
}

pids=()
for role in "${roles[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  echo "== molecule: roles/$role (log: .cache/molecule/$role.log)"
  run_role "$role" &
  pids+=($!)
done
wait

failed=()
echo "== molecule summary"
for role in "${roles[@]}"; do
  line=$(cat "$logs/$role.result" 2>/dev/null || echo "$role: no result")
  echo "   $line"
  case $line in
    *passed*) ;;
    *)
      failed+=("$role")
      # the failing task or test first: the log's tail is usually the destroy step
      echo "---- failures in $role.log"
      sed 's/\x1b\[[0-9;]*m//g' "$logs/$role.log" 2>/dev/null \
        | grep -E "fatal:|FAILED!|FAILED [^-]|ERROR [^ ]+::|^E   |_{5,} [^ ]+ _{5,}" | head -60
      echo "---- last lines of $role.log"; tail -25 "$logs/$role.log" 2>/dev/null ;;
  esac
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "molecule-all: failed: ${failed[*]}" >&2
  exit 1
fi
