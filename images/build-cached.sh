#!/usr/bin/env bash
# Build a local image from a folder, only when the folder's content changed.
#   images/build-cached.sh DIR TAG [--build-arg K=V ...]
# The content hash (plus build args) is stored as a label; an up-to-date image is a no-op.
set -euo pipefail
dir=$1 tag=$2; shift 2
digest=$( (cd "$dir" && find . -type f -print0 | sort -z | xargs -0 sha256sum; echo "$*") | sha256sum | cut -c1-16)
have=$(docker image inspect -f '{{ index .Config.Labels "org.lectern.inputs" }}' "$tag" 2>/dev/null || true)
[ "$have" = "$digest" ] && exit 0
echo "build: $tag from $dir" >&2
log=$(mktemp)
# Debian's docker.io has no buildx: the legacy builder is used (no --chmod, no heredocs).
if ! DOCKER_BUILDKIT=0 docker build "$@" --label "org.lectern.inputs=$digest" -t "$tag" "$dir" >"$log" 2>&1; then
  echo "build: ERROR: docker build of $tag failed; last lines:" >&2; tail -25 "$log" >&2; rm -f "$log"; exit 1
fi
rm -f "$log"
