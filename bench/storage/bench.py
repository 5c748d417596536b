"""Storage and shared cache (issue 4): covers from S3 vs local, the Redis second tier.

    .venv/bin/python bench/storage/bench.py [--books 10000] [--duration 5] [--pages 200]

On the calibredb-made benchmark library (bench/app/build_library.py, cached):
1. `covers upload` into moto's S3 server (loopback HTTP): first run (everything) and a
   re-run with nothing changed (only the manifest is read and rewritten).
2. Three `python -m lectern_app` processes: L (local covers, no Redis), S1 and S2 (S3
   covers, one redis-server). wrk (-t2 -c10) on one thumbnail URL: L answers the image
   from memory, S1 answers a 302 to a presigned URL (the redirect only, not S3's answer).
3. The second tier: S1 renders /api/books?page=1..N (each written to Redis), then S2 and
   L request the same N URLs once each, sequentially: S2's first requests come from
   Redis, L's are rendered. Median and p90 per request (client side, httpx).
Results: bench/results/storage-<time>.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "app"))
from build_library import build  # noqa: E402
from wrk import wrk  # noqa: E402

CREDS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}
BUCKET = "bench-covers"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


BASE_ENV = dict(os.environ)  # before the upload's settings are put into os.environ


def start(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    e = dict(BASE_ENV, **CREDS, HOST="127.0.0.1", PORT=str(port), LOG_LEVEL="info", **env)
    p = subprocess.Popen(
        [sys.executable, "-m", "lectern_app"],
        env=e,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "ab"),  # noqa: SIM115
    )
    base = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 300:
        try:
            if httpx.get(base + "/api/health", timeout=60).status_code == 200:
                return p, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{base} did not start")


def timed(client: httpx.Client, urls: list[str]) -> list[float]:
    out = []
    for u in urls:
        t0 = time.perf_counter()
        r = client.get(u)
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (u, r.status_code)
    return out


def summary(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {
        "median_ms": round(statistics.median(xs), 2),
        "p90_ms": round(xs[int(len(xs) * 0.9) - 1], 2),
        "n": len(xs),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--books", type=int, default=10000)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--pages", type=int, default=200)
    a = ap.parse_args()
    from lectern_app.config import Settings
    from lectern_app.storage.upload import upload_covers
    from moto.server import ThreadedMotoServer

    lib = build(a.books, ROOT / ".cache" / "bench" / f"library-{a.books}")
    work = Path(tempfile.mkdtemp(prefix="lectern-bench-storage-"))
    os.environ.update(CREDS)
    load0 = os.getloadavg()
    result: dict[str, Any] = {"books": a.books, "load_before": load0}
    mport = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=mport, verbose=False)
    moto.start()
    s3url = f"http://127.0.0.1:{mport}"
    redis_port = free_port()
    redis = subprocess.Popen(
        [
            *("redis-server", "--port", str(redis_port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(work)),
        ],
        stdout=subprocess.DEVNULL,
    )
    procs: list[subprocess.Popen[bytes]] = []
    keep = False
    try:
        boto3.client("s3", endpoint_url=s3url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        s3env = {
            "CALIBRE_LIBRARY_PATH": str(lib),
            "USE_S3_COVERS": "true",
            "S3_BUCKET_NAME": BUCKET,
            "S3_ENDPOINT_URL": s3url,
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        }
        os.environ.update(s3env, DATA_DIR=str(work / "upload"))
        settings = Settings.from_env()
        r1 = upload_covers(settings)
        r2 = upload_covers(settings)
        result["upload_first"] = {k: v for k, v in r1.as_dict().items() if k != "errors"} | {
            "errors": len(r1.errors)
        }
        result["upload_rerun"] = {k: v for k, v in r2.as_dict().items() if k != "errors"} | {
            "errors": len(r2.errors)
        }
        print(
            f"upload: first {r1.seconds:.1f} s ({r1.uploaded}+{r1.thumbs_uploaded} objects),"
            f" re-run {r2.seconds:.1f} s ({r2.uploaded}+{r2.thumbs_uploaded})",
            flush=True,
        )

        local_env = {"CALIBRE_LIBRARY_PATH": str(lib), "DATA_DIR": str(work / "L")}
        pl, base_l = start(local_env, work / "L.log")
        procs.append(pl)
        p1, base_s1 = start({**s3env, "DATA_DIR": str(work / "S1")}, work / "S1.log")
        procs.append(p1)
        p2, base_s2 = start({**s3env, "DATA_DIR": str(work / "S2")}, work / "S2.log")
        procs.append(p2)
        cover_id = next(
            int(k)
            for k in json.loads(
                boto3.client("s3", endpoint_url=s3url, region_name="us-east-1")
                .get_object(Bucket=BUCKET, Key="covers/manifest.json")["Body"]
                .read()
            )["covers"]
        )
        url = f"/api/files/cover/{cover_id}?size=thumbnail"
        deadline = time.monotonic() + 60
        while httpx.get(base_s1 + url).status_code != 302:
            if time.monotonic() > deadline:
                print(httpx.get(base_s1 + "/api/health").text)
                print((work / "S1.log").read_text()[-3000:])
                keep = True
                raise RuntimeError("S1 never redirected")
            time.sleep(0.2)
        assert httpx.get(base_l + url).status_code == 200
        result["cover_local"] = wrk(base_l + url, 10, a.duration)
        result["cover_s3_redirect"] = wrk(base_s1 + url, 10, a.duration)

        urls = [f"/api/books?page={i}&per_page=30&sort=title" for i in range(1, a.pages + 1)]
        with httpx.Client(base_url=base_s1, timeout=60) as c1:
            result["render_s1"] = summary(timed(c1, urls))
        time.sleep(1.0)  # the writer thread sends them to Redis
        with httpx.Client(base_url=base_s2, timeout=60) as c2:
            result["first_request_from_redis_s2"] = summary(timed(c2, urls))
            m = c2.get("/metrics").text
            hits = re.search(r'lectern_cache_hits_total\{cache="shared"\} ([\d.]+)', m)
            result["s2_shared_hits"] = float(hits.group(1)) if hits else 0.0
        with httpx.Client(base_url=base_l, timeout=60) as cl:
            result["first_request_rendered_l"] = summary(timed(cl, urls))
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
        redis.terminate()
        redis.wait(10)
        moto.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    result["load_after"] = os.getloadavg()
    out = ROOT / "bench" / "results" / f"storage-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    u1, u2 = result["upload_first"], result["upload_rerun"]
    cl, cs = result["cover_local"], result["cover_s3_redirect"]
    print(f"\nresults: {out.relative_to(ROOT)}  (load {load0[0]:.1f} before)\n")
    print("| measurement | value |")
    print("|---|---|")
    print(
        f"| covers upload, first run ({u1['covers']} covers) | {u1['seconds']:.1f} s,"
        f" {u1['uploaded']} covers + {u1['thumbs_uploaded']} thumbnails, {u1['bytes']} bytes |"
    )
    print(
        f"| covers upload, re-run, nothing changed | {u2['seconds']:.1f} s,"
        f" {u2['uploaded']} + {u2['thumbs_uploaded']} uploaded |"
    )
    for name, r in (("local (200, image from memory)", cl), ("S3 (302 presigned)", cs)):
        print(
            f"| cover thumbnail, {name}, c=10 | {r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms,"
            f" p99 {r['p99_ms']:.2f} ms |"
        )
    for name, key in (
        ("rendered by S1 (and written to Redis)", "render_s1"),
        ("S2's first request, from Redis", "first_request_from_redis_s2"),
        ("L's first request, rendered (no Redis)", "first_request_rendered_l"),
    ):
        s = result[key]
        print(
            f"| /api/books page, {name} | median {s['median_ms']} ms, p90 {s['p90_ms']} ms"
            f" (n={s['n']}) |"
        )
    print(f"| S2 shared-cache hits | {result['s2_shared_hits']:.0f} of {a.pages} |")


if __name__ == "__main__":
    main()
