#!/usr/bin/env bash
# Provisioning benchmark on the lab: cold provision of a bare host, a no-op
# re-provision, for each engine; then 3 hosts at once vs 1 (pyinfra).
#   bench/provision/run.sh            (needs the lab: make lab)
# Prints a Markdown table (also written to bench/results/provision.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.venv/bin:$PATH"
out=bench/results/provision.md
mkdir -p bench/results

t() {  # seconds taken by a command; its output goes to bench/results/last.log (and provision.log)
  local start end
  start=$(date +%s.%N)
  "$@" >bench/results/last.log 2>&1 || { echo "bench: FAILED: $*" >&2; tail -20 bench/results/last.log >&2; exit 1; }
  end=$(date +%s.%N)
  cat bench/results/last.log >>bench/results/provision.log
  echo "$end - $start" | bc
}

changed() {  # what the last run reported as changed (Ansible's recap, pyinfra's grand total)
  local recap
  if recap=$(grep -oE 'changed=[0-9]+' bench/results/last.log | tail -n1); then
    echo "${recap#changed=}"
  else
    awk '/Grand total/ { print ($4 == "-" ? 0 : $4) }' bench/results/last.log | tail -n1
  fi
}

: > bench/results/provision.log
appliance lab up >/dev/null
rows=()
# ansible = appliance provision's default (Mitogen's strategy); ansible-linear = plain Ansible
for engine in pyinfra ansible ansible-linear; do
  strategy=mitogen_linear
  [ "$engine" = ansible-linear ] && strategy=linear
  appliance lab reset nas >/dev/null
  cold=$(LECTERN_ANSIBLE_STRATEGY=$strategy t appliance provision nas --engine "${engine%-linear}")
  warm=$(LECTERN_ANSIBLE_STRATEGY=$strategy t appliance provision nas --engine "${engine%-linear}")
  rows+=("| $engine | nas | $(printf %.1f "$cold") s | $(printf %.1f "$warm") s | $(changed) |")
done
appliance lab reset nas >/dev/null  # leave nas bare, as the lab tests expect

appliance lab reset pi server >/dev/null
one=$(t appliance provision pi --engine pyinfra)
appliance lab reset pi >/dev/null
three=$(t appliance provision pi,server,nas --engine pyinfra)
appliance lab reset nas >/dev/null

{
  echo "Provisioning ($(git rev-parse --short HEAD), $(nproc) cores, $(date -u +%F)); command: bench/provision/run.sh"
  echo
  echo "| engine | host | cold provision | no-op re-provision | no-op changed |"
  echo "| --- | --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
  echo
  echo "| pyinfra, cold | 1 host | 3 hosts | ratio |"
  echo "| --- | --- | --- | --- |"
  echo "| pi / pi,server,nas | $(printf %.1f "$one") s | $(printf %.1f "$three") s | $(echo "scale=2; $three / $one" | bc) |"
} | tee "$out"
