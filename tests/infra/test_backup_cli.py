"""`appliance backup` and `appliance restore` against a real lab host (quick, ~1-2 min).

The lab's `nas` is bare in the infra tier (pi and server carry the whole site and belong
to the e2e tests), so this module provisions ONLY the backup concern on nas with its
pyinfra deploy, runs the CLI as a user would, and resets nas to a bare host at the end.
nas has no Docker: the app stop/start around a restore is covered by the unit tests'
fakes, not here. The test database is its own file (cli-test.db), never the app's.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from labtools import BIN, REPO, run

from appliance import lab as lab_mod

HOST = "nas"
IP = {n.name: n.ip for n in lab_mod.NODES}
DATA = "/var/lib/lectern/data"
SEED = f"""
set -e
mkdir -p {DATA}/cli-test-files
python3 - <<'PY'
import sqlite3
c = sqlite3.connect("{DATA}/cli-test.db")
c.execute("pragma journal_mode=wal")
c.execute("create table if not exists users(id integer primary key, name text)")
c.executemany("insert into users(name) values(?)", [("reader",)] * 50)
c.commit()
PY
echo cover > {DATA}/cli-test-files/1.jpg
"""


def on(command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(*lab_mod.ssh_args(IP[HOST]), command, check=check)


def appliance(*args: str, inventory: Path) -> subprocess.CompletedProcess[str]:
    return run(str(BIN / "appliance"), *args, "--inventory", str(inventory), check=False)


@pytest.fixture(scope="module")
def nas(lab: Path) -> Iterator[Path]:
    env = f"LECTERN_INVENTORY={lab} PYTHONPATH={REPO}"
    run(
        "sh",
        "-c",
        f"{env} {BIN}/pyinfra -y --limit {HOST} appliance/pyinfra_inventory.py "
        "appliance/deploys/backup.py",
    )
    on(f"sudo sh -c {_quote(SEED)}")
    try:
        yield lab
    finally:
        run(str(BIN / "appliance"), "lab", "reset", HOST)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _users() -> int:
    return int(on(f"sudo sqlite3 {DATA}/cli-test.db 'select count(*) from users'").stdout)


def test_backup_then_restore_brings_the_data_back(nas: Path) -> None:
    out = appliance("backup", HOST, inventory=nas)
    assert out.returncode == 0, out.stderr
    host, snapshot = out.stdout.split()
    assert host == HOST and re.fullmatch(r"[0-9a-f]{64}", snapshot)
    assert _users() == 50

    # data changes after the backup: rows added, a file deleted
    on(f"sudo sqlite3 {DATA}/cli-test.db \"insert into users(name) values('late')\"")
    on(f"sudo rm {DATA}/cli-test-files/1.jpg")
    out = appliance("restore", HOST, "--snapshot", snapshot[:12], inventory=nas)
    assert out.returncode == 0, out.stderr
    # nas is bare in the infra tier (no app to stop); a full-site nas restarts its app
    assert out.stdout.startswith(f"{HOST}: restored snapshot {snapshot}; ")
    assert out.stdout.count("\n") == 1
    assert _users() == 50
    assert on(f"sudo cat {DATA}/cli-test-files/1.jpg").stdout == "cover\n"
    check = on(f"sudo sqlite3 {DATA}/cli-test.db 'pragma integrity_check'").stdout.strip()
    assert check == "ok"
    # the data replaced by the restore was kept in a pre-restore snapshot first
    listing = json.loads(on("sudo lectern-backup list").stdout)
    assert any("pre-restore" in s.get("tags", []) for s in listing)


def test_restore_of_a_missing_snapshot_is_one_clear_line(nas: Path) -> None:
    out = appliance("restore", HOST, "--snapshot", "deadbeef00", inventory=nas)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"error: {HOST}: no snapshot deadbeef00 in its backup repository; list them with "
        f"`ssh {HOST} sudo /usr/local/sbin/lectern-backup list` or take one with "
        f"`appliance backup {HOST}`"
    ]


def test_restore_refuses_without_snapshot(nas: Path) -> None:
    out = appliance("restore", HOST, inventory=nas)
    assert out.returncode == 2 and "needs --snapshot" in out.stderr
