#!/usr/bin/env bash
# Build the lab's images on the air-gapped base: host (systemd+sshd), pc (Samba), registry.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/build-cached.sh" "$here/lab-host" lectern/lab-host:bookworm --build-arg BASE_IMAGE=lectern/debian-base:bookworm
"$here/build-cached.sh" "$here/lab-pc" lectern/lab-pc:bookworm --build-arg LAB_HOST_IMAGE=lectern/lab-host:bookworm
"$here/build-cached.sh" "$here/lab-registry" lectern/lab-registry:bookworm --build-arg BASE_IMAGE=lectern/debian-base:bookworm
