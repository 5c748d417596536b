#!/usr/bin/python3
"""Run ON a host (sent over SSH by `appliance status`): one JSON line describing it.

Standard library only; reads what the roles leave behind and never changes anything.
"""

import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
from typing import Any


def sh(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def keyvals(path: str) -> dict[str, str]:
    try:
        with open(path) as fh:
            return dict(
                line.strip().split("=", 1)
                for line in fh
                if "=" in line and not line.startswith("#")
            )
    except OSError:
        return {}


def health_url(slot: str) -> str:
    """The serving slot's port, from the release tool's configuration."""
    try:
        with open("/etc/lectern/release.json") as fh:
            config = json.load(fh)
    except (OSError, ValueError):
        config = {}
    ports = config.get("slots") or {"blue": 8001}
    port = ports.get(slot) or next(iter(ports.values()))
    bind = config.get("bind", "127.0.0.1")
    host = "127.0.0.1" if bind in ("", "0.0.0.0", "::") else bind
    return f"http://{host}:{port}/api/health"


def main() -> None:
    out: dict[str, Any] = {"provisioned": os.path.exists("/etc/lectern/release")}
    out["version"] = keyvals("/etc/lectern/release").get("LECTERN_VERSION", "")
    release = sh("lectern-release", "status", "--json") if shutil.which("lectern-release") else ""
    active: dict[str, str] = {}
    with contextlib.suppress(ValueError):
        active = (json.loads(release) or {}).get("active") or {}
    container = "lectern-app-" + active["slot"] if active.get("slot") else "lectern-app"
    image = sh("docker", "inspect", "-f", "{{.Config.Image}}", container)
    out["tag"] = active.get("tag") or (image.rsplit(":", 1)[-1] if ":" in image else image)
    digest = active.get("digest") or ""
    if not digest and image:
        digests = sh("docker", "image", "inspect", "-f", "{{json .RepoDigests}}", image)
        try:
            digest = (json.loads(digests) or [""])[0].split("@")[-1]
        except ValueError:
            digest = ""
    out["digest"] = digest
    try:
        with urllib.request.urlopen(health_url(active.get("slot", "")), timeout=5) as resp:
            health = json.load(resp)
        out["health"] = health.get("status", "?")
        out["books"] = health.get("books")
    except Exception as exc:
        out["health"] = "down" if image else "absent"
        out["health_error"] = str(exc)[:120]
    try:
        with open("/var/lib/lectern-backup/last-snapshot.json") as fh:
            snap = json.load(fh)
        out["backup_age_s"] = int(time.time() - os.stat(fh.name).st_mtime)
        out["backup_snapshot"] = snap.get("snapshot", "")[:12]
    except (OSError, ValueError):
        out["backup_age_s"] = None
    source = keyvals("/etc/lectern/library-source")
    link = ""
    if source.get("path"):
        try:
            link = os.readlink(source["path"])
        except OSError:
            link = "missing"
    out["library"] = {
        "mode": source.get("mode", ""),
        "transport": source.get("transport", ""),
        "serving_from": link,
    }
    usage = shutil.disk_usage("/var/lib/lectern" if os.path.isdir("/var/lib/lectern") else "/")
    out["disk_free_gb"] = round(usage.free / 1e9, 1)
    print(json.dumps(out))


main()
