"""What an idle Lectern costs: CPU time and opens of metadata.db with no request at all.

    .venv/bin/python bench/app/idle.py [--books 10000] [--seconds 60] [--cpu 0]
                                       [--app DIR] [--label NAME]

Serves a copy of the calibredb-made benchmark library (bench/app/build_library.py) with
`python -m lectern_app`, watcher on, pinned to one core with taskset (a Pi-sized budget),
and measures two windows of --seconds with no request:

- idle: after the server answered its first request and rested --settle seconds;
- after a change: right after one `calibredb set_metadata` exits, so the window holds the
  reload(s) the change causes and the full re-read after quiet, then rest.

CPU seconds are utime+stime of the server process (all threads) from /proc/<pid>/stat;
opens of metadata.db are counted with inotify (IN_OPEN) on the library directory.
--app runs another checkout's app (e.g. a `git worktree` of an older commit) by putting
DIR first on PYTHONPATH. Results: bench/results/app-idle-<label>-<time>.json and stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from watchdog.events import FileOpenedEvent, FileSystemEvent, FileSystemEventHandler
from watchdog.observers.inotify import InotifyObserver

sys.path.insert(0, str(Path(__file__).parent))
from build_library import build
from lectern_app.demo import run_calibredb

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "bench"
TICK = os.sysconf("SC_CLK_TCK")


class Opens(FileSystemEventHandler):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0

    def on_opened(self, event: FileSystemEvent) -> None:
        if Path(str(event.src_path)).name == "metadata.db":
            with self.lock:
                self.count += 1


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)


def wakeups(pid: int) -> int:
    """Context switches of every thread: how often the process woke up."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        for line in status.read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def window(pid: int, opens: Opens, seconds: float) -> dict[str, Any]:
    with opens.lock:
        o0 = opens.count
    c0, w0, t0 = cpu_seconds(pid), wakeups(pid), time.monotonic()
    time.sleep(seconds)
    c1, w1, t1 = cpu_seconds(pid), wakeups(pid), time.monotonic()
    with opens.lock:
        o1 = opens.count
    wall = t1 - t0
    return {
        "seconds": round(wall, 1),
        "cpu_seconds": round(c1 - c0, 2),
        "cpu_percent_of_core": round(100 * (c1 - c0) / wall, 2),
        "metadata_db_opens": o1 - o0,
        "opens_per_second": round((o1 - o0) / wall, 1),
        "context_switches": w1 - w0,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--books", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--settle", type=float, default=15.0)
    ap.add_argument("--cpu", type=int, default=0, help="core to pin the server to (taskset)")
    ap.add_argument("--app", type=Path, default=None, help="another checkout's app/ directory")
    ap.add_argument("--label", default="current")
    ap.add_argument("--port", type=int, default=8111)
    a = ap.parse_args()

    source = build(a.books, CACHE / f"library-{a.books}")
    with tempfile.TemporaryDirectory(prefix="lectern-idle-", dir=CACHE) as tmp:
        lib = Path(tmp) / "library"
        shutil.copytree(source, lib)  # the change window writes to it
        data = Path(tmp) / "data"
        data.mkdir()
        env = dict(
            os.environ,
            CALIBRE_LIBRARY_PATH=str(lib),
            DATA_DIR=str(data),
            HOST="127.0.0.1",
            PORT=str(a.port),
            WATCH_CALIBRE_DB="true",
        )
        if a.app is not None:
            env["PYTHONPATH"] = str(a.app.resolve())
        cmd = ["taskset", "-c", str(a.cpu), sys.executable, "-m", "lectern_app"]
        log = (data / "lectern.log").open("wb")
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
        opens = Opens()
        obs = InotifyObserver()
        obs.schedule(opens, str(lib), recursive=False, event_filter=[FileOpenedEvent])
        obs.start()
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{a.port}/api/health", timeout=5).is_success:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((data / "lectern.log").read_text()[-2000:])
                time.sleep(0.2)
            time.sleep(a.settle)
            idle = window(proc.pid, opens, a.seconds)
            run_calibredb(lib, "set_metadata", "5", "--field", "title:Idle Bench Edit")
            after = window(proc.pid, opens, a.seconds)
            book = httpx.get(f"http://127.0.0.1:{a.port}/api/books/5", timeout=10).json()
            assert book["title"] == "Idle Bench Edit", book
        finally:
            obs.stop()
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
    result = {
        "label": a.label,
        "books": a.books,
        "command": " ".join(sys.argv),
        "server": " ".join(cmd[:4]) + " -m lectern_app",
        "app": str(a.app) if a.app else "app",
        "idle": idle,
        "after_change": after,
        "loadavg": os.getloadavg(),
    }
    out = ROOT / "bench" / "results" / f"app-idle-{a.label}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
