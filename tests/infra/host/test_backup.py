"""roles/backup and appliance/deploys/backup.py: one set of host assertions for both engines.

Run by molecule (roles/backup/molecule/*) and against lab hosts like test_base.py.
Expected values come from the host's variables (conftest.py: the `backup` fixture).
Optional environment:
  LECTERN_BACKUP_EXERCISE=1   also snapshot while a writer loop changes a SQLite database
                              in the data dir, restore, drill, check and prune (molecule;
                              on a lab host this adds snapshots to the real repository)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

import pytest

from appliance.roles import role_dir

Render = Callable[[str, str, dict[str, Any]], str]
ROLE = "backup"
TOOL = "/usr/local/sbin/lectern-backup"
UNITS = (
    "lectern-backup.service",
    "lectern-backup.timer",
    "lectern-backup-check.service",
    "lectern-backup-check.timer",
    "lectern-backup-drill.service",
    "lectern-backup-drill.timer",
)
EXERCISE = os.environ.get("LECTERN_BACKUP_EXERCISE") == "1"

# Runs ON the host: a writer committing into a WAL database for a while.
WRITER = r"""
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], timeout=30)
c.execute("pragma journal_mode=wal")
c.execute("create table if not exists t(id integer primary key, v text)")
end = time.time() + float(sys.argv[2])
while time.time() < end:
    with c:
        c.executemany("insert into t(v) values(?)", [("w" * 500,)] * 50)
        c.execute("delete from t where id in (select id from t order by random() limit 20)")
"""


class TestBackupPresent:
    """lectern_backup_state=present."""

    @pytest.fixture(autouse=True)
    def _only_present(self, backup_state: str) -> None:
        if backup_state != "present":
            pytest.skip("host provisioned with lectern_backup_state=absent")

    def test_packages(self, host: Any, backup: dict[str, Any]) -> None:
        for package in backup["lectern_backup_packages"]:
            assert host.package(package).is_installed, package

    def test_tool(self, host: Any) -> None:
        tool = host.file(TOOL)
        assert tool.is_file and tool.user == "root" and tool.mode == 0o755
        assert tool.content_string == (role_dir(ROLE) / "files" / "lectern-backup").read_text()

    def test_settings(self, host: Any, backup: dict[str, Any], render: Render) -> None:
        config_dir = backup["lectern_backup_config_dir"]
        conf = host.file(f"{config_dir}/backup.conf")
        assert conf.content_string == render(ROLE, "backup.conf.j2", backup)
        env = host.file(f"{config_dir}/env")
        assert env.mode == 0o600 and env.user == "root"
        assert env.content_string == render(ROLE, "env.j2", backup)

    def test_password_file(self, host: Any, backup: dict[str, Any]) -> None:
        password = host.file(backup["lectern_backup_password_file"])
        assert password.is_file
        assert password.user == "root" and password.mode == 0o600
        assert password.size > 8

    def test_units(self, host: Any, backup: dict[str, Any], render: Render) -> None:
        for unit in UNITS:
            f = host.file(f"/etc/systemd/system/{unit}")
            assert f.content_string == render(ROLE, f"{unit}.j2", backup), unit
        timer = host.file("/etc/systemd/system/lectern-backup.timer").content_string
        assert f"RandomizedDelaySec={backup['lectern_backup_randomized_delay']}\n" in timer

    def test_timers_active(self, host: Any) -> None:
        for unit in UNITS:
            if unit.endswith(".timer"):
                assert host.service(unit).is_enabled, unit
                assert host.service(unit).is_running, unit

    def test_repository_initialised(self, host: Any) -> None:
        assert host.check_output(f"{TOOL} initialized") == "yes"
        json.loads(host.check_output(f"{TOOL} list"))

    def test_snapshot_under_writes_restore_drill(self, host: Any, backup: dict[str, Any]) -> None:
        if not EXERCISE:
            pytest.skip("LECTERN_BACKUP_EXERCISE=1 not set")
        data = backup["lectern_backup_data_dir"]
        db = f"{data}/lectern-test.db"
        host.run("systemctl stop lectern-test-writer 2>/dev/null; rm -rf /root/lectern-restore")
        host.run_test(f"mkdir -p {data}/covers && head -c 65536 /dev/urandom > {data}/covers/c.jpg")
        host.run_test(f"python3 - {db} 0 <<'EOF'\n{WRITER}\nEOF")
        # a writer keeps committing during the snapshot: the copy must still be consistent
        host.run_test(
            f"systemd-run -q --unit lectern-test-writer python3 -c {_quote(WRITER)} {db} 20"
        )
        try:
            out = host.run(f"sleep 2; {TOOL} snapshot --tag pre-update")
            assert out.rc == 0, out.stderr
            snapshot = out.stdout.strip().splitlines()[-1]
            assert re.fullmatch(r"[0-9a-f]{64}", snapshot), out.stdout
            assert host.service("lectern-test-writer").is_running  # really under writes
        finally:
            host.run("systemctl stop lectern-test-writer")
        listing = json.loads(host.check_output(f"{TOOL} list"))
        assert any(s["id"] == snapshot and "pre-update" in s.get("tags", []) for s in listing)

        target = "/root/lectern-restore"
        restore = host.run(f"{TOOL} restore --snapshot {snapshot} --target {target}")
        assert restore.rc == 0, restore.stderr
        check = host.check_output(f"sqlite3 {target}/lectern-test.db 'pragma integrity_check'")
        assert check == "ok"
        assert int(host.check_output(f"sqlite3 {target}/lectern-test.db 'select count(*) from t'"))
        assert host.run(f"cmp {target}/covers/c.jpg {data}/covers/c.jpg").rc == 0
        assert not host.file(f"{target}/lectern-test.db-wal").exists
        # a non-empty target needs --force
        again = host.run(f"{TOOL} restore --snapshot {snapshot} --target {target}")
        assert again.rc == 1 and "--force" in again.stderr
        forced = host.run(f"{TOOL} restore --snapshot latest --target {target} --force")
        assert forced.rc == 0, forced.stderr
        host.run(f"rm -rf {target}")

        drill = host.run(f"{TOOL} drill")
        assert drill.rc == 0, drill.stderr
        assert "drill ok" in drill.stdout
        state = json.loads(
            host.file(f"{backup['lectern_backup_state_dir']}/last-drill.json").content_string
        )
        assert state["ok"] and "lectern-test.db" in state["databases"]
        assert host.run(f"{TOOL} check --subset 100%").rc == 0
        assert host.run(f"{TOOL} prune").rc == 0

    def test_drill_fails_loudly_on_a_corrupt_database(
        self, host: Any, backup: dict[str, Any]
    ) -> None:
        if not EXERCISE:
            pytest.skip("LECTERN_BACKUP_EXERCISE=1 not set")
        data = backup["lectern_backup_data_dir"]
        bad = f"{data}/broken.db"
        # a database file whose pages are garbage: the snapshot refuses to back it up
        host.run_test(f"python3 - {bad} 0 <<'EOF'\n{WRITER}\nEOF")
        host.run_test(f"python3 -c \"f=open('{bad}','r+b'); f.seek(4096); f.write(b'x'*8192)\"")
        try:
            out = host.run(f"{TOOL} snapshot")
            assert out.rc != 0
            assert "integrity_check" in out.stderr
        finally:
            host.run(f"rm -f {bad}")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


class TestBackupAbsent:
    """lectern_backup_state=absent: timers and tool gone; repository kept unless purge."""

    @pytest.fixture(autouse=True)
    def _only_absent(self, backup_state: str) -> None:
        if backup_state != "absent":
            pytest.skip("host provisioned with lectern_backup_state=present")

    def test_units_and_tool_removed(self, host: Any, backup: dict[str, Any]) -> None:
        for unit in UNITS:
            assert not host.file(f"/etc/systemd/system/{unit}").exists, unit
        assert not host.file(TOOL).exists
        assert not host.file(f"{backup['lectern_backup_config_dir']}/backup.conf").exists
        timers = host.check_output("systemctl list-timers --all --no-legend")
        assert "lectern-backup" not in timers

    def test_repository_kept_unless_purge(self, host: Any, backup: dict[str, Any]) -> None:
        kept = not backup["lectern_backup_purge"]
        assert host.file(backup["lectern_backup_password_file"]).exists == kept
        repository = backup["lectern_backup_repository"]
        if repository.startswith("/"):
            assert host.file(f"{repository}/config").exists == kept

    def test_packages_kept(self, host: Any) -> None:
        assert host.package("restic").is_installed
