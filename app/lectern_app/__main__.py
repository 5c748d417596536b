"""`python -m lectern_app`: serve the configured library, or a generated demo library."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from .config import Settings
from .proxyaddr import trusted_proxies


def _data_dir() -> Path:
    configured = os.environ.get("DATA_DIR", "").strip()
    if configured:
        return Path(configured)
    for candidate in (Path("/data"), Path.home() / ".cache" / "lectern"):
        try:
            candidate.mkdir(mode=0o700, parents=True, exist_ok=True)
            if os.access(candidate, os.W_OK):
                return candidate
        except OSError:
            continue
    return Path("/data")


def main() -> None:
    # DATA_DIR holds password hashes, the signing key and users' reading data: nothing
    # this process creates is for other users, from the first byte (SQLite's WAL too)
    os.umask(0o077)
    if len(sys.argv) > 1 and sys.argv[1] == "admin":  # user management, see accounts/cli.py
        from .accounts.cli import main as admin_main

        if not os.environ.get("DATA_DIR", "").strip():
            os.environ["DATA_DIR"] = str(_data_dir())
        sys.exit(admin_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "covers":  # S3 covers, see storage/upload.py
        from .storage.upload import main as covers_main

        if not os.environ.get("DATA_DIR", "").strip():
            os.environ["DATA_DIR"] = str(_data_dir())
        sys.exit(covers_main(sys.argv[2:]))
    settings = Settings.from_env()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("lectern")
    data_dir = _data_dir()
    os.environ["DATA_DIR"] = str(data_dir)
    if settings.library_path is None:
        from .demo import build_demo_library, calibredb_path

        if calibredb_path() is None:
            log.error(
                "CALIBRE_LIBRARY_PATH is not set and calibredb is not installed, so no demo "
                "library can be generated; /api/health will say so"
            )
        else:
            demo = data_dir / "demo-library"
            log.info("CALIBRE_LIBRARY_PATH not set: serving a demo library built at %s", demo)
            try:
                build_demo_library(demo)
                os.environ["CALIBRE_LIBRARY_PATH"] = str(demo)
            except Exception as e:  # keep serving: health reports the missing library
                log.error("demo library could not be built: %s", e)
    settings = Settings.from_env()
    import uvicorn

    try:
        trusted = trusted_proxies(settings.forwarded_allow_ips)
    except ValueError as e:
        log.error("%s", e)
        sys.exit(2)
    uvicorn.run(
        "lectern_app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="warning" if settings.log_level == "info" else settings.log_level,
        access_log=False,
        loop="uvloop" if _has("uvloop") else "asyncio",
        http="httptools" if _has("httptools") else "h11",
        # X-Forwarded-For/-Proto only from the proxy: anyone else could pick their address
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or "127.0.0.1",
        server_header=False,
    )


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
    sys.exit(0)
