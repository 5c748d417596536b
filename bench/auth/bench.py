"""Authenticated listing with the auth cache on vs off (issue 4; seed 001 claims 5 ms vs
100 ms per request).

    .venv/bin/python bench/auth/bench.py [--books 10000] [--duration 8]

On the calibredb-made benchmark library (bench/app/build_library.py, cached), starts
Lectern (`python -m lectern_app`, one process) with a SQLite accounts DB:
AUTH_REQUIRED=false (anonymous baseline), AUTH_REQUIRED=true with ENABLE_AUTH_CACHE=true,
and AUTH_REQUIRED=true with ENABLE_AUTH_CACHE=false; then the two auth modes again with
the accounts on a local PostgreSQL (throwaway cluster on a unix socket). Measures with
wrk (-t2, c=10 and c=50): the JSON listing /api/books with a Bearer JWT, and the OPDS
feed /opds/recent with HTTP Basic (what e-reader apps send on every request). Results:
bench/results/auth-<time>.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "app"))
from build_library import build  # noqa: E402
from wrk import wrk  # noqa: E402

PORT = 8111


def wait_ok(url: str, deadline_s: float) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        try:
            if httpx.get(url, timeout=60).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer 200 within {deadline_s} s")


PASSWORD = "bench-password-1"


def start(lib: Path, data: Path, **env: str) -> subprocess.Popen[bytes]:
    e = dict(
        os.environ,
        CALIBRE_LIBRARY_PATH=str(lib),
        DATA_DIR=str(data),
        HOST="127.0.0.1",
        PORT=str(PORT),
        WATCH_CALIBRE_DB="true",
        ADMIN_USERNAME="bench",
        ADMIN_PASSWORD=PASSWORD,
        LOGIN_MAX_PER_IP="1000",
        **env,
    )
    if "DATABASE_URL" not in env:
        e.pop("DATABASE_URL", None)
    p = subprocess.Popen(
        [sys.executable, "-m", "lectern_app"],
        env=e,
        stdout=subprocess.DEVNULL,
        stderr=open(data / "lectern.log", "ab"),  # noqa: SIM115
    )
    wait_ok(f"http://127.0.0.1:{PORT}/api/health", 180)
    return p


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def start_postgres(base: Path) -> Any:
    """A throwaway PostgreSQL cluster on a unix socket (Debian's postgresql package), or
    None when it is not installed. Returns a function: database name -> DATABASE_URL."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins:
        print("bench: no PostgreSQL installed; its rows are skipped", file=sys.stderr)
        return None
    bindir = bins[-1].parent
    base.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        base.parent.chmod(0o755)
    run = _as_postgres()
    subprocess.run(
        [*run, str(bindir / "initdb"), "-D", str(base / "data"), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *run,
            str(bindir / "pg_ctl"),
            "-D",
            str(base / "data"),
            "-l",
            str(base / "log"),
            "-o",
            f"-k {base} -c listen_addresses='' -p 5439",
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )

    def url(name: str) -> str:
        subprocess.run(
            [*run, str(bindir / "createdb"), "-h", str(base), "-p", "5439", "-U", "postgres", name],
            check=True,
            capture_output=True,
        )
        return f"postgresql://postgres@/{name}?host={base}&port=5439"

    return url


def stop_postgres(base: Path) -> None:
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if bins and (base / "data").exists():
        subprocess.run(
            [*_as_postgres(), str(bins[-1]), "-D", str(base / "data"), "-m", "fast", "stop"],
            capture_output=True,
        )


def stop(p: subprocess.Popen[bytes]) -> None:
    p.terminate()
    p.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--books", type=int, default=10000)
    ap.add_argument("--duration", type=int, default=8)
    a = ap.parse_args()
    lib = build(a.books, ROOT / ".cache" / "bench" / f"library-{a.books}")
    base = f"http://127.0.0.1:{PORT}"
    basic = "Authorization: Basic " + base64.b64encode(f"bench:{PASSWORD}".encode()).decode()
    load0 = os.getloadavg()
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="lectern-bench-auth-"))
    pg = start_postgres(work / "pg")
    modes: list[tuple[str, dict[str, str]]] = [
        ("anonymous", {"AUTH_REQUIRED": "false"}),
        ("auth cache on", {"AUTH_REQUIRED": "true", "ENABLE_AUTH_CACHE": "true"}),
        ("auth cache off", {"AUTH_REQUIRED": "true", "ENABLE_AUTH_CACHE": "false"}),
    ]
    if pg is not None:
        for on in ("on", "off"):
            modes.append(
                (
                    f"auth cache {on}, PostgreSQL",
                    {
                        "AUTH_REQUIRED": "true",
                        "ENABLE_AUTH_CACHE": "true" if on == "on" else "false",
                        "DATABASE_URL": pg(f"bench_{on}"),
                    },
                )
            )
    try:
        for mode, env in modes:
            data = work / re.sub(r"[^a-z]+", "-", mode)
            data.mkdir()
            p = start(lib, data, **env)
            try:
                tok = httpx.post(
                    base + "/api/auth/login", data={"username": "bench", "password": PASSWORD}
                ).json()["access_token"]
                bearer = f"Authorization: Bearer {tok}"
                checks = [
                    (
                        "JSON listing /api/books",
                        "/api/books",
                        None if mode == "anonymous" else bearer,
                    ),
                    ("OPDS /opds/recent", "/opds/recent", None if mode == "anonymous" else basic),
                ]
                for label, path, header in checks:
                    h = {header.split(": ", 1)[0]: header.split(": ", 1)[1]} if header else {}
                    assert httpx.get(base + path, headers=h).status_code == 200
                    if mode != "anonymous":
                        assert httpx.get(base + path).status_code == 401  # auth is really on
                    for conns in (10, 50):
                        r = wrk(base + path, conns, a.duration, header)
                        r.update(mode=mode, page=label, auth=header.split()[1] if header else "-")
                        rows.append(r)
                        print(
                            f"{mode:15} {label:26} c={conns:<3} {r['rps']:8.0f} req/s "
                            f"p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms "
                            f"non2xx {r['non2xx']}",
                            file=sys.stderr,
                        )
            finally:
                stop(p)
    finally:
        stop_postgres(work / "pg")
        shutil.rmtree(work, ignore_errors=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    result = {
        "books": a.books,
        "duration": a.duration,
        "commit": commit,
        "load_start": load0,
        "load_end": os.getloadavg(),
        "rows": rows,
    }
    out = ROOT / "bench" / "results" / f"auth-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(markdown(result))


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "| page | auth | c | mode | req/s | p50 ms | p99 ms | non-2xx |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for x in r["rows"]:
        lines.append(
            f"| {x['page']} | {x['auth']} | {x['c']} | {x['mode']} | {x['rps']:.0f} | "
            f"{x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['non2xx']} |"
        )
    l0, l1 = r["load_start"], r["load_end"]
    lines.append("")
    lines.append(
        f"- {r['books']} books, commit `{r['commit']}`, wrk -t2 -d{r['duration']}s; load average "
        f"{l0[0]:.2f} {l0[1]:.2f} {l0[2]:.2f} at the start, {l1[0]:.2f} {l1[1]:.2f} {l1[2]:.2f} "
        "at the end"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
