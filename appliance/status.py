"""`appliance status`: one row per host, gathered over SSH in parallel.

The host side is appliance/probe.py, piped to the host's python3: nothing is installed
for it and nothing is changed.
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from appliance.inventory import Host
from appliance.remote import run_on, sudo

PROBE = Path(__file__).with_name("probe.py")


def probe(host: Host) -> dict[str, Any]:
    row: dict[str, Any] = {"host": host.name, "profile": host.profile, "address": host.address}
    try:
        proc = run_on(host, f"{sudo(host)}python3 -", timeout=40, stdin=PROBE.read_text())
    except subprocess.TimeoutExpired:
        return {**row, "health": "unreachable", "error": "timed out"}
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["ssh failed"])[-1]
        return {**row, "health": "unreachable", "error": reason}
    return {**row, **json.loads(proc.stdout.strip().splitlines()[-1])}


def fleet(hosts: list[Host]) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(max_workers=min(16, max(1, len(hosts)))) as pool:
        return list(pool.map(probe, hosts))


def age(seconds: int | None) -> str:
    if seconds is None:
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
