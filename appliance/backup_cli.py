"""`appliance backup HOST` and `appliance restore HOST --snapshot ID`, over SSH.

Both call the backup role's on-host tool (/usr/local/sbin/lectern-backup, see
roles/backup/README.md); nothing is installed for them. SSH exactly as `appliance status`
(appliance.remote.run_on; sudo -n when the host has ansible_become).

* backup: `lectern-backup snapshot --tag manual` on every selected host in parallel; the
  snapshot id is the tool's last stdout line.
* restore: ONE host; appliance/backup_host.py is piped to the host's python3: it checks
  the snapshot exists, stops the app, restores /data (the tool takes a `pre-restore`
  snapshot of the current data first), starts the app and waits until it is healthy.

Every failure is one line naming the host and, where there is one, the fix.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from appliance.inventory import Host, InventoryError, load
from appliance.remote import run_on, sudo

TOOL = "/usr/local/sbin/lectern-backup"
HOST_SCRIPT = Path(__file__).with_name("backup_host.py")
# restic ids are hex; `latest` is the tool's name for the newest snapshot of the host
SNAPSHOT_ID = re.compile(r"^(latest|[0-9a-f]{6,64})$")
SSH_FAILED = 255
NOT_INSTALLED = (4, 127)
NO_SNAPSHOT = 5
BUSY = 3


class BackupCliError(RuntimeError):
    """A one-line reason; the CLI prints it and exits non-zero."""


@dataclass
class Result:
    host: str
    ok: bool
    snapshot: str = ""
    error: str = ""
    detail: str = ""


def select(target: str, inventory: Path) -> list[Host]:
    if not target.strip():
        raise BackupCliError("name a host or group (or 'all'), e.g. `appliance backup pi`")
    try:
        return load(inventory).select(target)
    except InventoryError as exc:
        raise BackupCliError(str(exc)) from exc


def check_snapshot_id(snapshot: str | None) -> str:
    if not snapshot:
        raise BackupCliError(
            "restore needs --snapshot ID (an id from `appliance backup`, the tool's "
            "`lectern-backup list`, or `latest`); nothing was restored"
        )
    if not SNAPSHOT_ID.match(snapshot):
        raise BackupCliError(
            f"--snapshot {snapshot!r} is not a snapshot id (6 to 64 hex digits) nor 'latest'"
        )
    return snapshot


def _last(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _ssh_error(host: Host, stderr: str) -> str:
    reason = _last(stderr) or "ssh failed"
    return f"{host.name} ({host.address}) is unreachable over SSH: {reason}"


def snapshot(host: Host, timeout: float = 3600) -> Result:
    """One `lectern-backup snapshot --tag manual` on ``host``."""
    remote = f"test -x {TOOL} || exit 127; {sudo(host)}{TOOL} snapshot --tag manual"
    try:
        proc = run_on(host, remote, timeout)
    except subprocess.TimeoutExpired:
        return Result(host.name, False, error=f"{host.name}: no answer within {timeout:.0f} s")
    if proc.returncode == 0:
        ident = _last(proc.stdout)
        if re.fullmatch(r"[0-9a-f]{8,64}", ident):
            return Result(host.name, True, snapshot=ident)
        return Result(host.name, False, error=f"{host.name}: no snapshot id in {ident!r}")
    if proc.returncode == SSH_FAILED:
        return Result(host.name, False, error=_ssh_error(host, proc.stderr))
    if proc.returncode in NOT_INSTALLED:
        return Result(
            host.name,
            False,
            error=f"{host.name}: {TOOL} is not installed; provision the backup role "
            "(lectern_backup_state: present)",
        )
    if proc.returncode == BUSY:
        return Result(
            host.name, False, error=f"{host.name}: another backup run holds the lock; retry later"
        )
    reason = _last(proc.stderr).removeprefix("lectern-backup: ") or f"exit {proc.returncode}"
    return Result(host.name, False, error=f"{host.name}: backup failed: {reason}")


def backup(target: str, inventory: Path) -> list[Result]:
    hosts = select(target, inventory)
    with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
        return list(pool.map(snapshot, hosts))


def restore(target: str, snapshot_id: str | None, inventory: Path, timeout: float = 3600) -> Result:
    """Restore /data of ONE host from ``snapshot_id``; raises BackupCliError on failure."""
    ident = check_snapshot_id(snapshot_id)
    hosts = select(target, inventory)
    if len(hosts) != 1:
        names = ", ".join(h.name for h in hosts)
        raise BackupCliError(
            f"restore works on one host at a time (snapshots belong to one host); "
            f"{target!r} selects {names}"
        )
    host = hosts[0]
    try:
        proc = run_on(
            host, f"{sudo(host)}python3 - {shlex.quote(ident)}", timeout, HOST_SCRIPT.read_text()
        )
    except subprocess.TimeoutExpired as exc:
        raise BackupCliError(f"{host.name}: restore gave no answer within {timeout:.0f} s") from exc
    if proc.returncode == SSH_FAILED:
        raise BackupCliError(_ssh_error(host, proc.stderr))
    try:
        out = json.loads(_last(proc.stdout))
    except ValueError:
        out = {"error": _last(proc.stderr) or f"exit {proc.returncode}"}
    if proc.returncode == NO_SNAPSHOT:
        raise BackupCliError(
            f"{host.name}: no snapshot {ident} in its backup repository; list them with "
            f"`ssh {host.name} sudo {TOOL} list` or take one with `appliance backup {host.name}`"
        )
    if proc.returncode in NOT_INSTALLED:
        raise BackupCliError(
            f"{host.name}: {TOOL} is not installed; provision the backup role "
            "(lectern_backup_state: present)"
        )
    if proc.returncode != 0 or not out.get("ok"):
        raise BackupCliError(f"{host.name}: restore failed: {out.get('error') or 'unknown'}")
    restarted = int(out.get("restarted") or 0)
    detail = (
        f"{restarted} app container(s) stopped, restarted and healthy"
        if restarted
        else "no app container was running"
    )
    return Result(host.name, True, snapshot=str(out.get("snapshot", "")), detail=detail)
