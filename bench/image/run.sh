#!/usr/bin/env bash
# Image benchmark: size per arch (compressed = sum of the layer blobs in the registry manifest,
# what a Pi downloads; unpacked = `docker image inspect` Size) and build time cold and warm.
#
#   bench/image/run.sh            cold = no layer cache (docker build --no-cache), warm = all cached
#   COLD=0 bench/image/run.sh     sizes and warm build only (fast)
# Pushes to a throwaway registry on 127.0.0.1:${BENCH_REGISTRY_PORT:-5056}; prints a markdown table
# and writes .cache/image-bench/result.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
PORT=${BENCH_REGISTRY_PORT:-5056}
OUT=$PWD/.cache/image-bench
REG=127.0.0.1:$PORT/lectern/app
NAME=lectern-image-bench-registry
mkdir -p "$OUT"
docker rm -f "$NAME" >/dev/null 2>&1 || true
docker run -d --name "$NAME" --tmpfs /var/lib/docker-registry -p "127.0.0.1:$PORT:5000" lectern/lab-registry:bookworm >/dev/null
trap 'docker rm -f "$NAME" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 60); do curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.5; done

t() { local t0; t0=$(date +%s.%N); "$@" >"$OUT/last.log" 2>&1 || { tail -20 "$OUT/last.log"; exit 1; }; python3 -c "print(f'{$(date +%s.%N)-$t0:.0f}')"; }
cold_amd64=- cold_arm64=-
if [ "${COLD:-1}" = 1 ]; then
  cold_amd64=$(NO_CACHE=1 FORCE=1 PLATFORMS=linux/amd64 OUT=$OUT REGISTRY=$REG t images/build.sh --no-push)
  cold_arm64=$(NO_CACHE=1 FORCE=1 PLATFORMS=linux/arm64 OUT=$OUT REGISTRY=$REG t images/build.sh --no-push)
fi
warm=$(FORCE=1 OUT=$OUT REGISTRY=$REG t images/build.sh)   # both arches, layer cache warm, + push + list
python3 - "$OUT" "$REG" "$cold_amd64" "$cold_arm64" "$warm" <<'PY'
import json, sys, urllib.request
out, reg, cold_amd64, cold_arm64, warm = sys.argv[1:]
host, repo = reg.split("/", 1)
rec = json.load(open(f"{out}/last-build.json"))
acc = "application/vnd.docker.distribution.manifest.v2+json,application/vnd.oci.image.manifest.v1+json"
rows, res = [], {"ref": rec["ref"], "warm_build_both_s": float(warm), "platforms": {}}
cold = {"linux/amd64": cold_amd64, "linux/arm64": cold_arm64}
for plat, p in rec["platforms"].items():
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{p['digest']}", headers={"Accept": acc})
    m = json.load(urllib.request.urlopen(req))
    comp = sum(l["size"] for l in m["layers"])
    layers = [round(l["size"] / 1e6, 2) for l in m["layers"]]
    res["platforms"][plat] = {"compressed_bytes": comp, "unpacked_bytes": p["unpacked_bytes"],
                              "layers_mb": layers, "cold_build_s": cold[plat]}
    rows.append(f"| {plat} | {comp/1e6:.1f} MB | {p['unpacked_bytes']/1e6:.1f} MB | {' + '.join(map(str, layers))} | {cold[plat]} s |")
json.dump(res, open(f"{out}/result.json", "w"), indent=2)
print("| platform | compressed (registry) | unpacked | layers (MB, compressed) | cold build |")
print("|---|---|---|---|---|")
print("\n".join(rows))
print(f"\nwarm `images/build.sh` (both arches, cache hit, push + manifest list): {warm} s")
PY
