#!/usr/bin/env bash
# Install the Debian packages the control machine needs for the lab and the tests.
# Idempotent: only missing packages are installed. Usage: ensure-host-packages.sh [pkg...]
set -euo pipefail
default=(debootstrap qemu-user-static binfmt-support calibre smbclient openssh-client
         sqlite3 curl jq rsync xz-utils uidmap bc wrk docker-compose redis-server
         postgresql)
want=("${@:-${default[@]}}")
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
[ "$(id -u)" = 0 ] || { echo "ensure-host-packages: need root to install: ${missing[*]}" >&2; exit 1; }
echo "ensure-host-packages: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || echo "ensure-host-packages: apt-get update reported errors; trying anyway" >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
