#!/usr/bin/python3
"""Run ON a host (sent over SSH by `appliance restore`): restore /data from a snapshot.

Standard library only. Usage: python3 - SNAPSHOT
  1. the snapshot must exist (`lectern-backup list`; an id prefix, short id or `latest`)
  2. the app's running containers (label org.lectern.role=app) are stopped, so that no
     process holds the database while it is replaced
  3. `lectern-backup restore --snapshot ID --target <data dir> --force`: it first takes a
     `pre-restore` snapshot of the current data, then replaces it
  4. the containers are started again (also when the restore failed) and must turn healthy
Prints one JSON line: {"ok", "snapshot", "restarted", "healthy", "error"}. Exit codes:
0 restored and healthy, 1 failed, 4 lectern-backup missing, 5 no such snapshot.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from typing import NoReturn

TOOL = "/usr/local/sbin/lectern-backup"
CONF = "/etc/lectern/backup/backup.conf"
HEALTH_TIMEOUT = 180


def run(*cmd: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def done(code: int, **out: object) -> NoReturn:
    print(json.dumps({"ok": code == 0, **out}))
    sys.exit(code)


def data_dir() -> str:
    try:
        with open(CONF) as fh:
            for line in fh:
                key, _, value = line.strip().partition("=")
                if key == "DATA_DIR":
                    return value.strip().strip("'\"")
    except OSError:
        pass
    return ""


def find(ident: str) -> dict[str, str] | None:
    listing = run(TOOL, "list", timeout=300)
    if listing.returncode != 0:
        done(1, error=last_line(listing.stderr) or "lectern-backup list failed")
    snaps = sorted(json.loads(listing.stdout or "[]") or [], key=lambda s: s["time"])
    if ident == "latest":
        return snaps[-1] if snaps else None
    for snap in snaps:
        if snap["id"].startswith(ident) or snap.get("short_id") == ident:
            return dict(snap)
    return None


def healthy(ids: list[str]) -> bool:
    deadline = time.monotonic() + HEALTH_TIMEOUT
    fmt = "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}"
    while True:
        states = [run("docker", "inspect", "-f", fmt, i, timeout=30).stdout.strip() for i in ids]
        if all(s in ("healthy", "running") for s in states):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(2)


def main(ident: str) -> None:
    if not os.access(TOOL, os.X_OK):
        done(4, error=f"{TOOL} is not installed: provision the backup role first")
    snap = find(ident)
    if snap is None:
        done(5, error=f"no snapshot {ident} of this host in its backup repository")
    target = data_dir()
    if not target:
        done(1, error=f"{CONF} names no DATA_DIR: provision the backup role first")
    ids: list[str] = []
    if shutil.which("docker"):  # no Docker: no app to stop (a backup-only host)
        ids = run(
            "docker", "ps", "-q", "--filter", "label=org.lectern.role=app", timeout=60
        ).stdout.split()
    if ids:
        run("docker", "stop", *ids, timeout=120)
    restore = run(TOOL, "restore", "--snapshot", snap["id"], "--target", target, "--force")
    error = "" if restore.returncode == 0 else last_line(restore.stderr) or "restore failed"
    if ids:
        run("docker", "start", *ids, timeout=120)
    ok = healthy(ids) if ids else True
    if not error and not ok:
        error = "restored, but the app did not turn healthy within 180 s"
    done(
        0 if not error else 1,
        snapshot=snap["id"],
        time=snap.get("time", ""),
        data_dir=target,
        restarted=len(ids),
        healthy=ok,
        error=error,
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
