"""`python -m lectern_app covers upload`: put the library's covers into the S3 bucket.

Uploads only what changed. What is in the bucket is known from the manifest the previous
run wrote (md5 and size per cover and thumbnail); without a manifest (first run, or a
bucket filled by another tool) the objects' ETags are listed and compared with the local
files' MD5 (a single-part upload's ETag is its MD5). Objects of books that were removed
or lost their cover are deleted. The manifest is written last, so a run that fails half
way leaves the app redirecting only to objects that exist. With REDIS_URL set the running
replicas are told to re-read the manifest at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings
from ..covers import Thumbnails, cover_path
from ..library import Library
from ..model import Book
from .s3covers import MANIFEST, file_md5, original_key, s3_client, short_error, thumb_key

log = logging.getLogger("lectern.covers.upload")


@dataclass
class Result:
    uploaded: int = 0
    thumbs_uploaded: int = 0
    unchanged: int = 0
    deleted: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    covers: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _read_manifest(client: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as e:
        code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    data = json.loads(body)
    return data if isinstance(data, dict) else None


def _listed_etags(client: Any, bucket: str, prefix: str) -> dict[str, str]:
    etags: dict[str, str] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            etags[obj["Key"]] = str(obj.get("ETag", "")).strip('"')
    return etags


def upload_covers(
    settings: Settings, dry_run: bool = False, force: bool = False, workers: int = 8
) -> Result:
    from .. import reader

    if settings.library_path is None:
        raise SystemExit("CALIBRE_LIBRARY_PATH is not set")
    if not settings.s3_bucket:
        raise SystemExit("S3_BUCKET_NAME is not set")
    t0 = time.perf_counter()
    raw = reader.load(settings.library_path, settings.busy_timeout)
    lib = Library(raw, 1, str(settings.library_path))
    client = s3_client(settings)
    bucket, prefix, width = settings.s3_bucket, settings.s3_covers_prefix, settings.thumbnail_width
    manifest_key = prefix + MANIFEST
    old = _read_manifest(client, bucket, manifest_key)
    if old is not None and old.get("library_id") not in (None, lib.library_id):
        log.warning("the bucket's manifest is for another library: re-uploading everything")
        old = None
    old_covers: dict[str, Any] = (old or {}).get("covers", {}) if not force else {}
    listed: dict[str, str] = {}
    if old is None and not force:
        listed = _listed_etags(client, bucket, prefix)
    thumbs = Thumbnails(settings.data_dir, width)
    res = Result()
    new_covers: dict[str, Any] = {}
    jobs: list[tuple[str, Path, str]] = []  # key, file, md5

    def same(book_key: str, part: str | None, key: str, md5: str) -> bool:
        entry = old_covers.get(book_key)
        if isinstance(entry, dict):
            e = entry if part is None else entry.get(part)
            if isinstance(e, dict) and e.get("md5") == md5:
                return True
        return listed.get(key) == md5

    books: list[Book] = sorted(lib.books.values(), key=lambda b: b.id)
    for b in books:
        src = cover_path(lib, b)
        if src is None:
            continue
        res.covers += 1
        bk = str(b.id)
        md5 = file_md5(src)
        size = src.stat().st_size
        entry: dict[str, Any] = {"md5": md5, "size": size, "stamp": int(b.last_modified_epoch)}
        okey = original_key(prefix, b.id)
        if same(bk, None, okey, md5):
            res.unchanged += 1
        else:
            jobs.append((okey, src, md5))
            res.uploaded += 1
            res.bytes += size
        tpath = thumbs.get(lib, b)
        if tpath is not None and tpath != src:
            tmd5 = file_md5(tpath)
            tkey = thumb_key(prefix, b.id, width)
            entry["thumb"] = {"md5": tmd5, "width": width, "src": md5}
            prev = (
                old_covers.get(bk, {}).get("thumb")
                if isinstance(old_covers.get(bk), dict)
                else None
            )
            if (
                isinstance(prev, dict) and prev.get("width") == width and prev.get("md5") == tmd5
            ) or listed.get(tkey) == tmd5:
                pass
            else:
                jobs.append((tkey, tpath, tmd5))
                res.thumbs_uploaded += 1
                res.bytes += tpath.stat().st_size
        new_covers[bk] = entry

    # objects of books gone or without a cover any more
    stale: list[str] = []
    for bk, entry in (old or {}).get("covers", {}).items():
        if bk in new_covers or not bk.isdigit():
            continue
        stale.append(original_key(prefix, int(bk)))
        t = entry.get("thumb") if isinstance(entry, dict) else None
        if isinstance(t, dict) and isinstance(t.get("width"), int):
            stale.append(thumb_key(prefix, int(bk), t["width"]))
    res.deleted = len(stale)

    if dry_run:
        res.seconds = time.perf_counter() - t0
        return res

    def put(job: tuple[str, Path, str]) -> str | None:
        key, path, _md5 = job
        try:
            client.put_object(
                Bucket=bucket,
                Key=key,
                Body=path.read_bytes(),
                ContentType="image/jpeg",
                CacheControl="public, max-age=86400",
            )
        except Exception as e:
            return f"{key}: {short_error(e)}"
        return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for err in pool.map(put, jobs):
            if err is not None:
                res.errors.append(err)
    failed = {e.split(":", 1)[0] for e in res.errors}
    for key in failed:  # not in the bucket: leave it out of the manifest
        bid = key[len(prefix) :].split(".", 1)[0].split("/")[-1].split("-")[0]
        if key.startswith(prefix + "thumbs/"):
            new_covers.get(bid, {}).pop("thumb", None)
        else:
            new_covers.pop(bid, None)
    for i in range(0, len(stale), 1000):
        chunk = stale[i : i + 1000]
        client.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
        )
    manifest = {
        "version": 1,
        "library_id": lib.library_id,
        "thumbnail_width": width,
        "generated": time.time(),
        "covers": new_covers,
    }
    client.put_object(
        Bucket=bucket,
        Key=manifest_key,
        Body=json.dumps(manifest, separators=(",", ":")).encode(),
        ContentType="application/json",
        CacheControl="no-cache",
    )
    if settings.redis_url:
        _announce(settings.redis_url, len(new_covers))
    res.seconds = time.perf_counter() - t0
    return res


def _announce(url: str, covers: int) -> None:
    """Tell running replicas (bus channel `covers`) to re-read the manifest."""
    from ..bus import RedisBus

    bus = RedisBus(url)
    bus.start()
    bus.publish("covers", {"covers": covers})
    bus.close()  # drains the outgoing queue


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lectern_app covers", description="Covers in S3 (USE_S3_COVERS)"
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("upload", help="upload changed covers and thumbnails to S3_BUCKET_NAME")
    up.add_argument("--dry-run", action="store_true", help="only say what would be uploaded")
    up.add_argument("--force", action="store_true", help="upload everything again")
    up.add_argument("--workers", type=int, default=8, help="parallel uploads (default 8)")
    up.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    try:
        res = upload_covers(settings, dry_run=args.dry_run, force=args.force, workers=args.workers)
    except Exception as e:  # a clear one-line error, never credentials
        print(f"covers upload failed: {short_error(e)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(res.as_dict()))
    else:
        verb = "would upload" if args.dry_run else "uploaded"
        print(
            f"{res.covers} covers: {verb} {res.uploaded} covers and {res.thumbs_uploaded}"
            f" thumbnails ({res.bytes} bytes), {res.unchanged} unchanged, {res.deleted} deleted,"
            f" {len(res.errors)} errors in {res.seconds:.2f} s"
        )
        for err in res.errors:
            print(f"  error: {err}", file=sys.stderr)
    return 1 if res.errors else 0
