"""`appliance backup` / `appliance restore`: argument errors and exit-code mapping.

No host is touched: SSH is replaced by a fake that returns what the host side would, or
aimed at a closed local port (a real unreachable host). The real run against a lab host
is tests/infra/test_backup_cli.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from appliance.backup_cli import BackupCliError, backup, check_snapshot_id, restore
from appliance.cli import app

ID = "3f2a" + "0" * 60


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    (tmp_path / "hosts.yml").write_text(
        f"""
all:
  vars: {{ansible_user: admin, ansible_become: true}}
  children:
    pi:
      hosts:
        kitchen-pi: {{ansible_host: 127.0.0.1, ansible_port: {_closed_port()}}}
    nas:
      hosts:
        attic-nas: {{ansible_host: 127.0.0.1, ansible_port: {_closed_port()}}}
"""
    )
    return tmp_path


class FakeSsh:
    """subprocess.run stand-in: records the remote command, answers with a fixed result."""

    def __init__(self, rc: int, stdout: str = "", stderr: str = "") -> None:
        self.rc, self.stdout, self.stderr = rc, stdout, stderr
        self.calls: list[list[str]] = []

    def __call__(self, cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(cmd)
        return subprocess.CompletedProcess(cmd, self.rc, self.stdout, self.stderr)


def test_restore_refuses_without_snapshot(inventory: Path) -> None:
    with pytest.raises(BackupCliError, match="needs --snapshot"):
        restore("kitchen-pi", None, inventory)
    with pytest.raises(BackupCliError, match="needs --snapshot"):
        restore("kitchen-pi", "", inventory)


@pytest.mark.parametrize("bad", ["x;rm -rf /", "abc", "$(id)", "LATEST", "3F2A0000"])
def test_snapshot_id_must_be_hex_or_latest(bad: str) -> None:
    with pytest.raises(BackupCliError, match="not a snapshot id"):
        check_snapshot_id(bad)


def test_snapshot_id_accepted() -> None:
    assert check_snapshot_id("latest") == "latest"
    assert check_snapshot_id(ID[:8]) == ID[:8]
    assert check_snapshot_id(ID) == ID


def test_unknown_host(inventory: Path) -> None:
    with pytest.raises(BackupCliError, match="'nope' is neither a host nor a group"):
        backup("nope", inventory)
    with pytest.raises(BackupCliError, match="'nope' is neither a host nor a group"):
        restore("nope", "latest", inventory)


def test_restore_one_host_only(inventory: Path) -> None:
    with pytest.raises(BackupCliError, match=r"one host at a time.*kitchen-pi, attic-nas"):
        restore("all", "latest", inventory)


def test_unreachable_host_is_one_line(inventory: Path) -> None:
    results = backup("pi", inventory)
    assert len(results) == 1 and not results[0].ok
    assert results[0].error.startswith("kitchen-pi (127.0.0.1) is unreachable over SSH")
    assert "\n" not in results[0].error
    with pytest.raises(BackupCliError, match=r"^kitchen-pi \(127.0.0.1\) is unreachable"):
        restore("kitchen-pi", "latest", inventory)


def test_backup_prints_the_snapshot_id(inventory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSsh(0, stdout=f"{ID}\n", stderr="lectern-backup: snapshot 3f2a0000: ...\n")
    monkeypatch.setattr(subprocess, "run", fake)
    results = backup("all", inventory)
    assert [(r.host, r.ok, r.snapshot) for r in results] == [
        ("kitchen-pi", True, ID),
        ("attic-nas", True, ID),
    ]
    remote = fake.calls[0][-1]
    assert remote.endswith("sudo -n /usr/local/sbin/lectern-backup snapshot --tag manual")


@pytest.mark.parametrize(
    ("rc", "stderr", "expected"),
    [
        (127, "", "is not installed; provision the backup role"),
        (3, "lectern-backup: busy", "another backup run holds the lock"),
        (1, "lectern-backup: restic backup failed: repo locked", "backup failed: restic backup"),
    ],
)
def test_backup_failures(
    inventory: Path, monkeypatch: pytest.MonkeyPatch, rc: int, stderr: str, expected: str
) -> None:
    monkeypatch.setattr(subprocess, "run", FakeSsh(rc, stderr=stderr))
    (result,) = backup("kitchen-pi", inventory)
    assert not result.ok and expected in result.error and result.error.startswith("kitchen-pi:")


def test_restore_missing_snapshot(inventory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = json.dumps({"ok": False, "error": "no snapshot 3f2a0000 of this host"})
    monkeypatch.setattr(subprocess, "run", FakeSsh(5, stdout=out))
    with pytest.raises(BackupCliError, match="kitchen-pi: no snapshot 3f2a0000 in its backup"):
        restore("kitchen-pi", "3f2a0000", inventory)


def test_restore_ok(inventory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = json.dumps({"ok": True, "snapshot": ID, "restarted": 1, "healthy": True})
    fake = FakeSsh(0, stdout=out)
    monkeypatch.setattr(subprocess, "run", fake)
    result = restore("kitchen-pi", "latest", inventory)
    assert result.ok and result.snapshot == ID
    assert fake.calls[0][-1] == "sudo -n python3 - latest"


def test_restore_failure_reason(inventory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = json.dumps({"ok": False, "error": "restored, but the app did not turn healthy"})
    monkeypatch.setattr(subprocess, "run", FakeSsh(1, stdout=out))
    with pytest.raises(BackupCliError, match="kitchen-pi: restore failed: restored, but the app"):
        restore("kitchen-pi", "latest", inventory)


def test_cli_errors_are_one_line(inventory: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["restore", "kitchen-pi", "--inventory", str(inventory)])
    assert res.exit_code == 2
    assert "needs --snapshot" in res.output and res.output.count("\n") == 1
    res = runner.invoke(app, ["backup", "nope", "--inventory", str(inventory)])
    assert res.exit_code == 2 and "neither a host nor a group" in res.output
    assert res.output.count("\n") == 1
    res = runner.invoke(app, ["backup", "pi", "--inventory", str(inventory)])
    assert res.exit_code == 1 and "unreachable over SSH" in res.output
