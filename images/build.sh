#!/usr/bin/env bash
# Build the multi-arch Lectern app image, push it, assemble ONE manifest list, record digests.
#
#   images/build.sh                 build linux/amd64 + linux/arm64, push to $REGISTRY, tag, record
#   images/build.sh --no-push       build the per-arch images locally only (tests, offline homes)
#
# Environment (all optional):
#   REGISTRY     where to push                   (default 127.0.0.1:5000/lectern/app, the lab registry)
#   PLATFORMS    comma-separated                 (default linux/amd64,linux/arm64; linux/arm/v7 is not offered)
#   CHANNEL      edge|stable                     (default: stable when HEAD carries tag vVERSION, else edge)
#   BASE_IMAGE   force a base image              (default: chosen per arch, see choose_base)
#   PUBLIC_BASE  the public base tried first     (default python:3.11-slim-bookworm; OFFLINE=1 skips it)
#   OUT          build records                   (default .cache/image; last-build.json is the record)
#   BUILDER      auto|bake|legacy                (default auto: `docker buildx bake` when buildx exists)
#   FORCE=1      rebuild even when the inputs hash says the local per-arch image is current
#
# Tags: X.Y.Z, X.Y, sha-<short sha>, and the channel tag, all on one manifest list. VERSION is
# app/pyproject.toml's version. The list digest and per-arch digests are printed and written to
# $OUT/last-build.json, because rollouts pin digests.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

REGISTRY=${REGISTRY:-127.0.0.1:5000/lectern/app}
PLATFORMS=${PLATFORMS:-linux/amd64,linux/arm64}
PUBLIC_BASE=${PUBLIC_BASE:-python:3.11-slim-bookworm}
OUT=${OUT:-$ROOT/.cache/image}
BUILDER=${BUILDER:-auto}
LOCAL_REPO=${LOCAL_REPO:-lectern/app}
UV=${UV:-$ROOT/.cache/uv-venv/bin/uv}
command -v "$UV" >/dev/null 2>&1 || UV=uv
PUSH=1
for a in "$@"; do
  case $a in
    --no-push) PUSH=0 ;;
    --push) PUSH=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $a" >&2; exit 2 ;;
  esac
done

log() { echo "image: $*" >&2; }
now() { date +%s.%N; }
since() { python3 -c "print(f'{$(now) - $1:.1f}')"; }

# ---------------------------------------------------------------- what we build
VERSION=$(python3 -c 'import tomllib; print(tomllib.load(open("app/pyproject.toml","rb"))["project"]["version"])')
SHA=$(git rev-parse --short=12 HEAD)
SHA_FULL=$(git rev-parse HEAD)
DIRTY=""
git diff --quiet HEAD -- app 2>/dev/null && [ -z "$(git ls-files --others --exclude-standard app)" ] || DIRTY="-dirty"
REVISION=$SHA_FULL$DIRTY
# data-schema generation (org.lectern.schema-version: lectern-release compares it on rollback)
SCHEMA=$(sed -n 's/^SCHEMA_GENERATION = \([0-9][0-9]*\)$/\1/p' app/lectern_app/__init__.py)
[ -n "$SCHEMA" ] || { echo "build: SCHEMA_GENERATION not found in app/lectern_app/__init__.py" >&2; exit 2; }
EPOCH=$(git log -1 --format=%ct HEAD)
CREATED=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)
SOURCE=${SOURCE_URL:-$(git config --get remote.origin.url 2>/dev/null || echo https://github.com/lectern/lectern)}
if [ -z "${CHANNEL:-}" ]; then
  CHANNEL=edge
  git tag --points-at HEAD | grep -qx "v$VERSION" && CHANNEL=stable
fi
MINOR=${VERSION%.*}
TAGS=("$VERSION" "$MINOR" "sha-$SHA" "$CHANNEL")
IFS=, read -r -a PLATS <<<"$PLATFORMS"

# ---------------------------------------------------------------- build context
CTX=$OUT/context
rm -rf "$CTX"; mkdir -p "$CTX"
"$UV" export --package lectern-app --no-dev --frozen --no-emit-workspace --no-header \
  --format requirements-txt -o "$CTX/requirements.txt" >/dev/null 2>&1 \
  || { log "ERROR: uv export failed (is uv.lock current? run make lock)"; exit 1; }
# hatchling writes a reproducible wheel (fixed zip timestamps) from the app's working tree
"$UV" build --package lectern-app --wheel --out-dir "$CTX" -q >/dev/null 2>"$OUT/uv-build.log" \
  || { log "ERROR: building the app wheel failed:"; tail -20 "$OUT/uv-build.log" >&2; exit 1; }
cp images/Dockerfile "$CTX/Dockerfile"
# Behind a TLS-inspecting proxy pip in the build needs the proxy's CA: BUILD_CA_BUNDLE (default:
# the bundle this machine's pip/requests use). Only the deps build stage sees it.
: > "$CTX/build-ca.pem"
ca=${BUILD_CA_BUNDLE-${PIP_CERT:-${REQUESTS_CA_BUNDLE:-${SSL_CERT_FILE:-}}}}
[ -n "$ca" ] && [ -s "$ca" ] && cp "$ca" "$CTX/build-ca.pem"

# ---------------------------------------------------------------- base image per arch
# A public Python base when a registry answers; otherwise (this lab, offline homes) the
# air-gapped debootstrap base from images/base, built on demand. The choice is logged,
# stored as the label org.opencontainers.image.base.name and in last-build.json.
choose_base() {
  local plat=$1 arch=${1#linux/}; arch=${arch//\//}
  if [ -n "${BASE_IMAGE:-}" ]; then echo "$BASE_IMAGE"; return; fi
  if [ "${OFFLINE:-0}" != 1 ]; then
    if [ "$(docker image inspect -f '{{.Architecture}}' "$PUBLIC_BASE" 2>/dev/null)" = "$arch" ] \
       || timeout 60 docker pull -q --platform "$plat" "$PUBLIC_BASE" >/dev/null 2>&1; then
      if [ "$(docker image inspect -f '{{.Architecture}}' "$PUBLIC_BASE" 2>/dev/null)" = "$arch" ]; then
        # pin the public base by digest so the build is repeatable
        local d; d=$(docker image inspect -f '{{index .RepoDigests 0}}' "$PUBLIC_BASE" 2>/dev/null || true)
        echo "${d:-$PUBLIC_BASE}"; return
      fi
    fi
  fi
  local deb=$arch; [ "$arch" = armv7 ] && deb=armhf
  local tag=lectern/debian-base:bookworm-$deb
  docker image inspect "$tag" >/dev/null 2>&1 || images/base/build.sh "$deb" >&2
  echo "$tag"
}

# ---------------------------------------------------------------- buildx bake (users' machines, CI)
if [ "$BUILDER" = bake ] || { [ "$BUILDER" = auto ] && docker buildx version >/dev/null 2>&1; }; then
  log "buildx found: docker buildx bake -f images/docker-bake.hcl (${PLATFORMS})"
  t0=$(now)
  export CONTEXT=$CTX VERSION REVISION CREATED SOURCE SCHEMA PLATFORMS REGISTRY SOURCE_DATE_EPOCH=$EPOCH
  export TAGS_CSV; TAGS_CSV=$(IFS=,; echo "${TAGS[*]}")
  export BASE_IMAGE=${BASE_IMAGE:-$PUBLIC_BASE}
  bake_args=(-f images/docker-bake.hcl --metadata-file "$OUT/bake-metadata.json")
  [ "$PUSH" = 1 ] && bake_args+=(--push)
  docker buildx bake "${bake_args[@]}" app
  list_digest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["app"]["containerimage.digest"])' "$OUT/bake-metadata.json")
  python3 - "$OUT/last-build.json" <<EOF
import json, sys
json.dump({"builder": "buildx-bake", "registry": "$REGISTRY", "version": "$VERSION",
           "revision": "$REVISION", "created": "$CREATED", "channel": "$CHANNEL",
           "tags": "${TAGS[*]}".split(), "digest": "$list_digest",
           "ref": "$REGISTRY@$list_digest", "build_seconds": $(since "$t0")},
          open(sys.argv[1], "w"), indent=2)
EOF
  echo "$REGISTRY@$list_digest"
  exit 0
fi

# ---------------------------------------------------------------- legacy builder, one arch at a time
# Debian's docker.io 20.10 has no buildx: each platform is built with the legacy builder
# from its own-arch base (foreign arches run under qemu-user-static via binfmt), pushed by a
# per-arch tag, and `docker manifest` (CLI 28) assembles the list.
mkdir -p "$OUT"
declare -A LOCAL_TAG ARCH_BASE ARCH_SECONDS ARCH_CACHED
for plat in "${PLATS[@]}"; do
  arch=${plat#linux/}; arch=${arch//\//}
  base=$(choose_base "$plat")
  ARCH_BASE[$plat]=$base
  base_id=$(docker image inspect -f '{{.Id}}' "$base")
  log "$plat: base $base ($( [ "${base#lectern/debian-base}" != "$base" ] && echo air-gapped debootstrap base || echo public base))"
  build_args=(--build-arg "BASE_IMAGE=$base" --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION"
              --build-arg "CREATED=$CREATED" --build-arg "SOURCE=$SOURCE" --build-arg "SCHEMA=$SCHEMA")
  [ -n "${PIP_INDEX_URL:-}" ] && build_args+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL")
  inputs=$( (cd "$CTX" && find . -type f -print0 | sort -z | xargs -0 sha256sum; echo "$plat $base_id ${build_args[*]}") \
            | sha256sum | cut -c1-16)
  tag=$LOCAL_REPO:$VERSION-$arch
  LOCAL_TAG[$plat]=$tag
  have=$(docker image inspect -f '{{ index .Config.Labels "org.lectern.inputs" }}' "$tag" 2>/dev/null || true)
  t0=$(now)
  if [ "$have" = "$inputs" ] && [ "${FORCE:-0}" != 1 ]; then
    log "$plat: $tag is current (inputs $inputs): not rebuilt"
    ARCH_CACHED[$plat]=True
  else
    log "$plat: docker build -> $tag (legacy builder$( [ "$arch" != "$(dpkg --print-architecture)" ] && echo ', under qemu'))"
    blog=$OUT/build-$arch.log
    if ! DOCKER_BUILDKIT=0 docker build --platform "$plat" "${build_args[@]}" \
         ${NO_CACHE:+--no-cache} --label "org.lectern.inputs=$inputs" \
         -t "$tag" "$CTX" >"$blog" 2>&1; then
      log "ERROR: build for $plat failed; last lines of $blog:"; tail -30 "$blog" >&2; exit 1
    fi
    ARCH_CACHED[$plat]=False
  fi
  ARCH_SECONDS[$plat]=$(since "$t0")
  log "$plat: $tag ready in ${ARCH_SECONDS[$plat]} s"
done

arch_json() {  # per-arch facts for the record
  local first=1
  for plat in "${PLATS[@]}"; do
    [ $first = 1 ] || printf ','; first=0
    local tag=${LOCAL_TAG[$plat]}
    printf '"%s": {"local_tag": "%s", "base": "%s", "image_id": "%s", "unpacked_bytes": %s, "build_seconds": %s, "cached": %s, "digest": "%s"}' \
      "$plat" "$tag" "${ARCH_BASE[$plat]}" "$(docker image inspect -f '{{.Id}}' "$tag")" \
      "$(docker image inspect -f '{{.Size}}' "$tag")" "${ARCH_SECONDS[$plat]}" "${ARCH_CACHED[$plat]}" "${ARCH_DIGEST[$plat]:-}"
  done
}

declare -A ARCH_DIGEST
list_digest=""
if [ "$PUSH" = 1 ]; then
  for plat in "${PLATS[@]}"; do
    arch=${plat#linux/}; arch=${arch//\//}
    remote=$REGISTRY:sha-$SHA-$arch
    docker tag "${LOCAL_TAG[$plat]}" "$remote"
    docker push "$remote" >"$OUT/push-$arch.log" 2>&1 \
      || { log "ERROR: push of $remote failed:"; tail -5 "$OUT/push-$arch.log" >&2; exit 1; }
    ARCH_DIGEST[$plat]=$(grep -o 'digest: sha256:[0-9a-f]*' "$OUT/push-$arch.log" | tail -1 | cut -d' ' -f2)
    log "$plat: pushed $remote@${ARCH_DIGEST[$plat]}"
  done
  insecure=(); case $REGISTRY in 127.*|localhost*|lab-registry*) insecure=(--insecure) ;; esac
  [ "${REGISTRY_INSECURE:-0}" = 1 ] && insecure=(--insecure)
  for t in "${TAGS[@]}"; do
    refs=()
    for plat in "${PLATS[@]}"; do refs+=("$REGISTRY@${ARCH_DIGEST[$plat]}"); done
    docker manifest rm "$REGISTRY:$t" >/dev/null 2>&1 || true
    docker manifest create "${insecure[@]}" "$REGISTRY:$t" "${refs[@]}" >/dev/null
    for plat in "${PLATS[@]}"; do
      case $plat in linux/arm64) docker manifest annotate "$REGISTRY:$t" "$REGISTRY@${ARCH_DIGEST[$plat]}" --os linux --arch arm64 --variant v8 ;; esac
    done
    d=$(docker manifest push "${insecure[@]}" --purge "$REGISTRY:$t" | grep -o 'sha256:[0-9a-f]*' | tail -1)
    [ -z "$list_digest" ] || [ "$list_digest" = "$d" ] || log "WARNING: tag $t got list digest $d, not $list_digest"
    list_digest=$d
    log "tag $REGISTRY:$t -> $d"
  done
fi

python3 - "$OUT/last-build.json" <<EOF
import json, sys
rec = {"builder": "legacy-per-arch", "registry": "$REGISTRY", "pushed": $PUSH == 1,
       "version": "$VERSION", "revision": "$REVISION", "created": "$CREATED", "channel": "$CHANNEL",
       "tags": "${TAGS[*]}".split(), "digest": "$list_digest",
       "ref": "$REGISTRY@$list_digest" if "$list_digest" else None,
       "platforms": {$(arch_json)}}
json.dump(rec, open(sys.argv[1], "w"), indent=2)
EOF
log "recorded $OUT/last-build.json"
if [ -n "$list_digest" ]; then
  echo "$REGISTRY@$list_digest"
else
  for plat in "${PLATS[@]}"; do echo "${LOCAL_TAG[$plat]}"; done
fi
