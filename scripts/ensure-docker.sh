#!/usr/bin/env bash
# Make sure a Docker engine answers. Uses a running engine when `docker info` works;
# otherwise installs Debian's docker.io and starts dockerd in the background.
# Idempotent and quiet when there is nothing to do.
set -euo pipefail

log() { echo "ensure-docker: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

engine_up() { timeout 10 docker info >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && engine_up; then
  exit 0
fi

[ "$(id -u)" = 0 ] || die "no Docker engine answers and installing one needs root (run as root or start dockerd yourself)"

if ! command -v dockerd >/dev/null 2>&1; then
  log "installing Debian's docker.io (no engine found)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || log "apt-get update reported errors; trying the install anyway"
  apt-get install -y -qq --no-install-recommends docker.io iptables ca-certificates >/dev/null \
    || die "apt-get install docker.io failed; check that Debian's package mirror is reachable"
fi

# Engine configuration: MTU of the uplink (this VM uses 1400; a larger bridge MTU
# silently breaks TLS inside containers), and no userland-proxy surprises.
mtu=$(ip -o link show "$(ip route show default 2>/dev/null | awk '{print $5; exit}')" 2>/dev/null \
      | sed -n 's/.* mtu \([0-9]*\).*/\1/p')
mtu=${mtu:-1500}
mkdir -p /etc/docker
if [ ! -f /etc/docker/daemon.json ]; then
  printf '{\n  "mtu": %s,\n  "log-driver": "json-file",\n  "log-opts": {"max-size": "10m", "max-file": "3"}\n}\n' "$mtu" \
    > /etc/docker/daemon.json
fi

if systemctl is-system-running >/dev/null 2>&1; then
  systemctl start docker || true
fi
if ! engine_up; then
  # this host's dockerd, by its pid file: `pgrep dockerd` also sees the engines nested in
  # lab containers (same pid namespace), and waiting on one of those never ends
  if ! { [ -s /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }; then
    log "starting dockerd (log: /var/log/lectern-dockerd.log)"
    nohup dockerd >/var/log/lectern-dockerd.log 2>&1 </dev/null &
    disown || true
  fi
  for _ in $(seq 1 60); do
    engine_up && break
    sleep 1
  done
fi
engine_up || die "dockerd did not answer within 60 s; see /var/log/lectern-dockerd.log"
log "engine ready: $(docker version --format '{{.Server.Version}}' 2>/dev/null)"
