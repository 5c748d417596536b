#!/usr/bin/env bash
# Build air-gapped Debian base images with debootstrap and import them into Docker.
#
#   images/base/build.sh [ARCH...]        (default: amd64 arm64)
#
# Produces lectern/debian-base:bookworm-<arch> for each ARCH and tags the machine's
# own architecture as lectern/debian-base:bookworm. Needs only Debian's package mirror
# (MIRROR, default deb.debian.org) — no image registry — so offline homes and this
# lab can build every image Lectern uses. Images already present are skipped.
set -euo pipefail

SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
REPO=${BASE_IMAGE_REPO:-lectern/debian-base}
CACHE=${BASE_IMAGE_CACHE:-/var/cache/lectern/debootstrap}
archs=("${@:-amd64 arm64}")
# shellcheck disable=SC2206
archs=(${archs[*]})
native=$(dpkg --print-architecture)

log() { echo "base-image: $*" >&2; }

ensure_binfmt() {
  # Foreign architectures run through qemu-user-static; binfmt_misc must be mounted
  # and the qemu handlers registered (with the F flag, so they work inside chroots).
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  local name=$1
  if [ ! -e "/proc/sys/fs/binfmt_misc/qemu-$name" ]; then
    update-binfmts --enable "qemu-$name" >/dev/null 2>&1 || true
    if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
      systemctl restart systemd-binfmt >/dev/null 2>&1 || true
    fi
  fi
  [ -e "/proc/sys/fs/binfmt_misc/qemu-$name" ] \
    || { log "ERROR: qemu-$name is not registered in binfmt_misc (install qemu-user-static binfmt-support)"; exit 1; }
}

qemu_name() {
  case $1 in
    arm64) echo aarch64 ;; armhf) echo arm ;; amd64) echo x86_64 ;; *) echo "$1" ;;
  esac
}

for arch in "${archs[@]}"; do
  tag="$REPO:$SUITE-$arch"
  if docker image inspect "$tag" >/dev/null 2>&1; then
    [ "$arch" = "$native" ] && docker tag "$tag" "$REPO:$SUITE"
    continue
  fi
  [ "$arch" = "$native" ] || ensure_binfmt "$(qemu_name "$arch")"
  root=$(mktemp -d "/var/tmp/lectern-rootfs-$arch.XXXXXX")
  trap 'rm -rf "$root" "$root.tar"' EXIT
  mkdir -p "$CACHE/$arch"
  log "debootstrap $SUITE/$arch from $MIRROR (a few minutes; foreign arches run under qemu)"
  start=$(date +%s)
  debootstrap --variant=minbase --arch="$arch" --cache-dir="$CACHE/$arch" \
    --include=ca-certificates "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 \
    || { log "ERROR: debootstrap failed for $arch; last lines of $root.log:"; tail -20 "$root.log" >&2; exit 1; }
  # Keep the image small and reproducible-ish: no apt lists, no logs, no caches.
  chroot "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/var/cache/apt/*.bin "$root"/tmp/*
  printf 'deb %s %s main\ndeb %s %s-updates main\ndeb http://deb.debian.org/debian-security %s-security main\n' \
    "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$SUITE" > "$root/etc/apt/sources.list"
  tar --numeric-owner --sort=name --mtime='2000-01-01' -C "$root" -cf "$root.tar" .
  python3 "$(dirname "$0")/rootfs_to_image.py" "$root.tar" "$tag" "$arch" | docker load -q >/dev/null
  rm -rf "$root" "$root.log" "$root.tar"
  trap - EXIT
  log "imported $tag in $(( $(date +%s) - start )) s"
  [ "$arch" = "$native" ] && docker tag "$tag" "$REPO:$SUITE"
done
exit 0
