"""Lectern vs calibre-web 0.6.27 on the same calibredb-made library, in the same run.

    .venv/bin/python bench/app/bench.py [--books 10000] [--duration 8] [--skip-cw]

Measures with wrk at c=10 and c=50: HTML listing, search, authors, book page, cover,
OPDS feed (like with like), the JSON API on its own line, plus RSS, cold start and the
stale window after `calibredb add` (Lectern). calibre-web runs from its own venv under
.cache/bench/cw-venv, bound to 127.0.0.1, anonymous browsing enabled in its app.db.
Results: bench/results/app-<time>.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import contextlib

from build_library import build
from lectern_app.demo import BookSpec, make_epub, run_calibredb
from wrk import wrk

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "bench"
CW_VENV = CACHE / "cw-venv"
LECTERN_PORT, CW_PORT = 8101, 8102


def rss_mb(pid: int) -> tuple[float, float]:
    vals: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            k, v = line.split(":", 1)
            vals[k] = int(v.split()[0]) / 1024
    return vals.get("VmRSS", 0.0), vals.get("VmHWM", 0.0)


def wait_ok(url: str, deadline_s: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        try:
            r = httpx.get(url, timeout=60)
            if r.status_code == 200:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer 200 within {deadline_s} s")


def start_lectern(lib: Path, port: int, data: Path) -> tuple[subprocess.Popen[bytes], float]:
    env = dict(
        os.environ,
        CALIBRE_LIBRARY_PATH=str(lib),
        DATA_DIR=str(data),
        HOST="127.0.0.1",
        PORT=str(port),
        WATCH_CALIBRE_DB="true",
    )
    t0 = time.monotonic()
    p = subprocess.Popen(
        [sys.executable, "-m", "lectern_app"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(data / "lectern.log", "wb"),  # noqa: SIM115
    )
    t1 = wait_ok(f"http://127.0.0.1:{port}/", 120)
    return p, t1 - t0


def prepare_cw(lib: Path, work: Path) -> Path:
    """A calibre-web app.db pointing at `lib`, anonymous browsing + downloads allowed."""
    work.mkdir(parents=True, exist_ok=True)
    appdb = work / "app.db"
    if not appdb.exists():
        p = subprocess.Popen(
            [str(CW_VENV / "bin" / "cps"), "-p", str(appdb), "-i", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=work,
        )
        try:
            wait_ok("http://127.0.0.1:8083/login", 120)
        finally:
            p.send_signal(signal.SIGINT)
            p.wait(30)
    c = sqlite3.connect(appdb)
    c.execute(
        "UPDATE settings SET config_calibre_dir=?, config_port=?, config_anonbrowse=1",
        (str(lib), CW_PORT),
    )
    c.execute("UPDATE user SET role = role | 2 WHERE name = 'Guest'")  # allow downloads
    # show the guest every sidebar page the admin sees (the authors list is off by default)
    c.execute(
        "UPDATE user SET sidebar_view = (SELECT sidebar_view FROM user WHERE name = 'admin')"
        " WHERE name = 'Guest'"
    )
    c.commit()
    c.close()
    return appdb


def start_cw(appdb: Path) -> tuple[subprocess.Popen[bytes], float]:
    t0 = time.monotonic()
    p = subprocess.Popen(
        [str(CW_VENV / "bin" / "cps"), "-p", str(appdb), "-i", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=open(appdb.parent / "cw.log", "wb"),  # noqa: SIM115
        cwd=appdb.parent,
    )
    t1 = wait_ok(f"http://127.0.0.1:{CW_PORT}/", 300)
    return p, t1 - t0


def stale_window(lib: Path, port: int, runs: int) -> dict[str, Any]:
    """Seconds from `calibredb add` exiting to the new book being served, under read load."""
    base = f"http://127.0.0.1:{port}"
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=base, timeout=30) as c:
            while not stop.is_set():
                c.get("/api/books?per_page=30")
                c.get("/")

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    windows: list[float] = []
    cli_times: list[float] = []
    work = lib.parent / "stale-work"
    work.mkdir(exist_ok=True)
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            for i in range(runs):
                token = f"stalewindowprobe{i}x{int(time.time())}"
                epub = make_epub(BookSpec(title=f"Probe {token}"), work / f"{token}.epub")
                t_start = time.monotonic()
                run_calibredb(lib, "add", str(epub))
                t_exit = time.monotonic()
                while True:
                    if c.get("/api/books", params={"q": token}).json()["total"] == 1:
                        break
                windows.append(time.monotonic() - t_exit)
                cli_times.append(t_exit - t_start)
    finally:
        stop.set()
        for t in threads:
            t.join()
    windows.sort()
    return {
        "runs": runs,
        "p50_ms": statistics.median(windows) * 1000,
        "p95_ms": windows[max(0, round(0.95 * len(windows)) - 1)] * 1000,
        "max_ms": windows[-1] * 1000,
        "calibredb_add_s_median": statistics.median(cli_times),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--books", type=int, default=10_000)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--skip-cw", action="store_true")
    ap.add_argument("--stale-runs", type=int, default=20)
    a = ap.parse_args()

    lib = build(a.books, CACHE / f"library-{a.books}")
    run_dir = CACHE / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    ours = run_dir / "lectern-library"
    theirs = run_dir / "cw-library"
    shutil.copytree(lib, ours)
    shutil.copytree(lib, theirs)
    (run_dir / "lectern-data").mkdir()

    mid = a.books // 2
    lectern_cover_v = None
    pages = {  # name: (lectern path, calibre-web path)
        "HTML listing (home)": ("/", "/"),
        # calibre-web answers /search?query= with a redirect to this page
        "search 'river'": ("/search?q=river", "/search/stored?query=river"),
        "authors": ("/authors", "/author"),
        "book page": (f"/book/{mid}", f"/book/{mid}"),
        "cover (original)": (f"/api/files/cover/{mid}", f"/cover/{mid}/og"),
        "OPDS recently added": ("/opds/recent", "/opds/new"),
        "download (epub)": (f"/api/files/download/{mid}/epub", f"/download/{mid}/epub"),
        "JSON API /api/books": ("/api/books?per_page=30", None),
    }
    results: dict[str, Any] = {
        "books": a.books,
        "duration_s": a.duration,
        "pages": {},
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "cpus": os.cpu_count(),
    }

    p, cold = start_lectern(ours, LECTERN_PORT, run_dir / "lectern-data")
    results["lectern"] = {"cold_start_s": cold}
    try:
        lectern_cover_v = httpx.get(f"http://127.0.0.1:{LECTERN_PORT}/api/books/{mid}").json()
        results["lectern"]["rss_after_start_mb"] = rss_mb(p.pid)[0]
        for name, (ours_path, _cw) in pages.items():
            for conns in (10, 50):
                httpx.get(f"http://127.0.0.1:{LECTERN_PORT}{ours_path}", timeout=30)
                r = wrk(f"http://127.0.0.1:{LECTERN_PORT}{ours_path}", conns, a.duration)
                results["pages"].setdefault(name, {})[f"lectern_c{conns}"] = r
                print(name, conns, r["rps"], r["p99_ms"], flush=True)
        results["lectern"]["rss_mb"], results["lectern"]["rss_peak_mb"] = rss_mb(p.pid)
        results["stale"] = stale_window(ours, LECTERN_PORT, a.stale_runs)
        print("stale", results["stale"], flush=True)
    finally:
        p.terminate()
        p.wait(20)
    del lectern_cover_v

    if not a.skip_cw:
        appdb = prepare_cw(theirs, run_dir / "cw")
        results["calibre_web"] = {}
        rss: list[float] = []
        for name, (_ours, cw_path) in pages.items():
            if cw_path is None:
                continue
            for conns in (10, 50):
                # a fresh calibre-web per measurement: requests still queued from a slow
                # page would otherwise be billed to the next one
                cw, cold = start_cw(appdb)
                results["calibre_web"].setdefault("cold_start_s", cold)
                try:
                    with contextlib.suppress(httpx.HTTPError):
                        httpx.get(f"http://127.0.0.1:{CW_PORT}{cw_path}", timeout=120)
                    # calibre-web needs seconds per page: give it long enough to finish some
                    r = wrk(f"http://127.0.0.1:{CW_PORT}{cw_path}", conns, max(a.duration, 20))
                    results["pages"][name][f"cw_c{conns}"] = r
                    rss.append(rss_mb(cw.pid)[1])
                    print("cw", name, conns, r["rps"], r["p99_ms"], flush=True)
                finally:
                    cw.send_signal(signal.SIGINT)
                    try:
                        cw.wait(20)
                    except subprocess.TimeoutExpired:
                        cw.kill()
                        cw.wait()
        results["calibre_web"]["rss_mb"] = max(rss, default=0.0)
        results["calibre_web"]["rss_peak_mb"] = max(rss, default=0.0)
    results["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]

    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"app-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(markdown(results))
    print(f"\nraw results: {path}")


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "| page | c | Lectern req/s | p50 ms | p99 ms "
        "| calibre-web req/s | p50 ms | p99 ms | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in r["pages"].items():
        for conns in (10, 50):
            lec = rows.get(f"lectern_c{conns}")
            cw = rows.get(f"cw_c{conns}")
            if lec is None:
                continue
            err = f" ({lec['non2xx']} non-2xx)" if lec["non2xx"] else ""
            if cw:
                cw_err = (
                    f" ({cw['non2xx']} non-2xx, {cw['timeouts']} timeouts)"
                    if (cw["non2xx"] or cw["timeouts"])
                    else ""
                )
                ratio = (
                    f"{lec['rps'] / cw['rps']:.0f}x"
                    if cw["rps"]
                    else "calibre-web finished no request in 20 s"
                )
                cw_cols = f"{cw['rps']:.1f}{cw_err} | {cw['p50_ms']:.0f} | {cw['p99_ms']:.0f}"
            else:
                cw_cols, ratio = "- | - | -", "-"
            lines.append(
                f"| {name} | {conns} | {lec['rps']:.0f}{err} | {lec['p50_ms']:.2f} | "
                f"{lec['p99_ms']:.2f} | {cw_cols} | {ratio} |"
            )
    lec = r["lectern"]
    lines.append("")
    lines.append(
        f"- machine: {r.get('cpus')} CPUs shared with other jobs; load average "
        f"{' '.join(r.get('loadavg_start', []))} at the start, "
        f"{' '.join(r.get('loadavg_end', []))} at the end"
    )
    lines.append(
        f"- Lectern: cold start {lec['cold_start_s']:.2f} s, RSS {lec['rss_mb']:.0f} MB "
        f"(peak {lec['rss_peak_mb']:.0f} MB)"
    )
    if "calibre_web" in r:
        cw = r["calibre_web"]
        lines.append(
            f"- calibre-web: cold start {cw['cold_start_s']:.2f} s, RSS "
            f"{cw.get('rss_mb', 0):.0f} MB (peak {cw.get('rss_peak_mb', 0):.0f} MB)"
        )
    if "stale" in r:
        s = r["stale"]
        lines.append(
            f"- stale window after `calibredb add` exits ({s['runs']} runs, under read "
            f"load): p50 {s['p50_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms, max "
            f"{s['max_ms']:.1f} ms"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
