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

PROBE = Path(__file__).with_name("probe.py")


def ssh_command(host: Host) -> list[str]:
    v = host.vars
    cmd = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"]
    if not v.get("lectern_strict_host_keys", False):
        cmd += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    if v.get("ansible_ssh_private_key_file"):
        cmd += ["-i", str(v["ansible_ssh_private_key_file"])]
    if v.get("ansible_port"):
        cmd += ["-p", str(v["ansible_port"])]
    user = v.get("ansible_user")
    cmd.append(f"{user}@{host.address}" if user else host.address)
    return cmd


def probe(host: Host) -> dict[str, Any]:
    row: dict[str, Any] = {"host": host.name, "profile": host.profile, "address": host.address}
    sudo = "sudo -n " if host.vars.get("ansible_become") else ""
    try:
        proc = subprocess.run(
            [*ssh_command(host), f"{sudo}python3 -"],
            input=PROBE.read_text(),
            capture_output=True,
            text=True,
            timeout=40,
            check=False,
        )
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
