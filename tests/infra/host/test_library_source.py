"""roles/library_source and appliance/deploys/library_source.py: one set of assertions.

Run by molecule (roles/library_source/molecule/*) and against lab hosts like test_base.py.
Expected values come from the host's variables (conftest.py: the `library` fixture).
Optional environment:
  LECTERN_LIBRARY_SOURCE_DB=PATH   a metadata.db on the control machine holding the same
                                   library as the source: its book count must match
  LECTERN_LIBRARY_FAILOVER=1       also take the primary away (stop its unit) and expect the
                                   stable path on a replica, then back on the primary
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import pytest

Render = Callable[[str, str, dict[str, Any]], str]
TOOL = "/usr/local/sbin/lectern-library"
ROLE = "library_source"


def _unit_name(path: str) -> str:
    return path.strip("/").replace("/", "-")


def _transport(host: Any, v: dict[str, Any]) -> tuple[str, str]:
    """The (transport, reason) the role must have recorded, decided like the role does."""
    mode = v["lectern_library_mode"]
    if mode == "local":
        return "bind", "library on this host's disk"
    if mode == "rclone":
        return (
            "rclone-sync",
            f"timer-driven sync from a {v['lectern_library_rclone_remote']['type']} remote",
        )
    if mode == "onedrive":
        directory = v["lectern_library_onedrive_directory"]
        return (
            "onedrive-monitor",
            f"Debian onedrive client, monitor mode, single directory {directory}",
        )
    forced = v["lectern_library_smb_transport"]
    if forced != "auto":
        kind = "kernel-cifs" if forced == "kernel" else "rclone-fuse"
        return kind, f"forced by lectern_library_smb_transport={forced}"
    probe = host.run("grep -qw cifs /proc/filesystems || modprobe -n -q cifs")
    if probe.rc == 0:
        return "kernel-cifs", "kernel cifs available"
    return "rclone-fuse", "no kernel cifs"


def _count(host: Any, directory: str) -> int:
    out = host.check_output(
        f"sqlite3 -readonly 'file:{directory}/metadata.db?mode=ro' 'select count(*) from books'"
    )
    return int(out)


def _link(host: Any, v: dict[str, Any]) -> str:
    return str(host.check_output(f"readlink {v['lectern_library_root']}/library"))


def _wait_link(host: Any, v: dict[str, Any], wanted: str, seconds: int = 60) -> str:
    deadline = time.monotonic() + seconds
    current = _link(host, v)
    while current != wanted and time.monotonic() < deadline:
        time.sleep(2)
        current = _link(host, v)
    return current


class TestLibrarySourcePresent:
    """lectern_library_state=present."""

    @pytest.fixture(autouse=True)
    def _only_present(self, library_state: str) -> None:
        if library_state != "present":
            pytest.skip("host provisioned with lectern_library_state=absent")

    def test_state_file(self, host: Any, library: dict[str, Any], render: Render) -> None:
        transport, reason = _transport(host, library)
        state = host.file(f"{library['lectern_library_config_dir']}/library-source")
        assert state.is_file
        assert state.user == "root"
        assert state.mode == 0o644
        expected = render(
            ROLE, "library-source.j2",
            {**library, "library_source_transport": transport, "library_source_reason": reason},
        )  # fmt: skip
        assert state.content_string == expected
        assert f"mode={library['lectern_library_mode']}\n" in expected
        assert f"transport={transport}\nreason={reason}\n" in expected

    def test_tool(self, host: Any) -> None:
        tool = host.file(TOOL)
        assert tool.is_file
        assert tool.mode == 0o755

    def test_health_timer(self, host: Any, library: dict[str, Any], render: Render) -> None:
        for unit in ("lectern-library-health.service", "lectern-library-health.timer"):
            assert host.file(f"/etc/systemd/system/{unit}").content_string == render(
                ROLE, f"{unit}.j2", library
            )
        timer = host.service("lectern-library-health.timer")
        assert timer.is_enabled
        assert timer.is_running

    def test_stable_path(self, host: Any, library: dict[str, Any]) -> None:
        if library["lectern_library_mode"] == "onedrive":
            pytest.skip("onedrive cannot be authorized here: the stable path stays unavailable")
        root = library["lectern_library_root"]
        link = host.file(f"{root}/library")
        assert link.is_symlink
        target = _link(host, library)
        assert not target.startswith("/"), "relative, so containers resolve it too"
        assert host.file(f"{root}/library/metadata.db").is_file
        books = _count(host, f"{root}/library")
        assert books > 0
        assert books == _count(host, f"{root}/{target}")
        source_db = os.environ.get("LECTERN_LIBRARY_SOURCE_DB")
        if source_db and os.path.isfile(source_db):
            connection = sqlite3.connect(f"file:{source_db}?mode=ro", uri=True)
            try:
                (expected,) = connection.execute("select count(*) from books").fetchone()
            finally:
                connection.close()
            assert books == expected

    def test_read_only(self, host: Any, library: dict[str, Any]) -> None:
        if library["lectern_library_mode"] == "onedrive":
            pytest.skip("onedrive cannot be authorized here")
        root = library["lectern_library_root"]
        uid, gid = library["lectern_library_uid"], library["lectern_library_gid"]
        as_app = host.run(
            f"setpriv --reuid {uid} --regid {gid} --clear-groups"
            f" touch {root}/library/.lectern-write-test"
        )
        assert as_app.rc != 0, "the app's user can write into the library"
        as_root = host.run(f"touch {root}/sources/primary/.lectern-write-test")
        if library["lectern_library_mode"] in ("smb", "local"):
            assert as_root.rc != 0, "the primary is not mounted read-only"

    def test_smb(self, host: Any, library: dict[str, Any], render: Render) -> None:
        if library["lectern_library_mode"] != "smb":
            pytest.skip("not smb")
        transport, _ = _transport(host, library)
        config_dir = library["lectern_library_config_dir"]
        primary = f"{library['lectern_library_root']}/sources/primary"
        if transport == "rclone-fuse":
            unit = "lectern-library-smb.service"
            assert host.file(f"/etc/systemd/system/{unit}").content_string == render(
                ROLE, f"{unit}.j2", library
            )
            assert host.service(unit).is_running
            assert host.service(unit).is_enabled
            mount = host.mount_point(primary)
            assert mount.exists
            assert mount.filesystem == "fuse.rclone"
            assert "ro" in mount.options
            conf = host.file(f"{config_dir}/rclone.conf")
            assert conf.mode == 0o600
            assert conf.user == "root"
            assert "type = smb\n" in conf.content_string
            assert host.file(f"{config_dir}/rclone.conf.sha256").mode == 0o600
            password_file = library["lectern_library_smb_password_file"]
            if password_file and os.path.isfile(password_file):
                with open(password_file) as handle:
                    secret = handle.read().strip()
                assert secret not in conf.content_string, "password stored in clear"
        else:
            creds = host.file(f"{config_dir}/smb-credentials")
            assert creds.mode == 0o600
            assert creds.user == "root"
            automount = host.service(f"{_unit_name(primary)}.automount")
            assert automount.is_enabled

    def test_rclone(self, host: Any, library: dict[str, Any], render: Render) -> None:
        if library["lectern_library_mode"] != "rclone":
            pytest.skip("not rclone")
        root = library["lectern_library_root"]
        for unit in ("lectern-library-rclone.service", "lectern-library-rclone.timer"):
            assert host.file(f"/etc/systemd/system/{unit}").content_string == render(
                ROLE, f"{unit}.j2", library
            )
        assert host.service("lectern-library-rclone.timer").is_running
        assert host.file(f"{root}/sources/primary").linked_to  # -> ../rclone/current
        assert host.file(f"{root}/rclone/current").is_symlink
        conf = host.file(f"{library['lectern_library_config_dir']}/rclone.conf")
        assert conf.mode == 0o600
        assert f"type = {library['lectern_library_rclone_remote']['type']}\n" in conf.content_string

    def test_onedrive(self, host: Any, library: dict[str, Any], render: Render) -> None:
        if library["lectern_library_mode"] != "onedrive":
            pytest.skip("not onedrive")
        confdir = f"{library['lectern_library_config_dir']}/onedrive"
        for name in ("config", "sync_list"):
            rendered = host.file(f"{confdir}/{name}")
            assert rendered.mode == 0o600
            assert rendered.content_string == render(ROLE, f"onedrive.{name}.j2", library)
        for unit in ("lectern-library-onedrive.service", "lectern-library-onedrive.path"):
            assert host.file(f"/etc/systemd/system/{unit}").content_string == render(
                ROLE, f"{unit}.j2", library
            )
            assert host.service(unit).is_enabled
        assert host.service("lectern-library-onedrive.path").is_running

    def test_replicas(self, host: Any, library: dict[str, Any], render: Render) -> None:
        replicas = library["lectern_library_replica_paths"]
        if not replicas:
            pytest.skip("no replicas")
        root = library["lectern_library_root"]
        for unit in ("lectern-library-replicas.service", "lectern-library-replicas.timer"):
            assert host.file(f"/etc/systemd/system/{unit}").content_string == render(
                ROLE, f"{unit}.j2", library
            )
        assert host.service("lectern-library-replicas.timer").is_running
        books = _count(host, f"{root}/sources/primary")
        for index, path in enumerate(replicas, start=1):
            view = f"{root}/sources/replica{index}"
            unit = f"{_unit_name(view)}.mount"
            expected = render(
                ROLE,
                "bind.mount.j2",
                {**library, "library_source_what": path, "library_source_where": view},
            )
            assert host.file(f"/etc/systemd/system/{unit}").content_string == expected
            assert host.mount_point(view).exists
            assert "ro" in host.mount_point(view).options
            assert _count(host, path) == books
            assert _count(host, view) == books

    def test_failover(self, host: Any, library: dict[str, Any]) -> None:
        """Seed 000's fallback chain: primary gone -> freshest healthy replica -> back."""
        if os.environ.get("LECTERN_LIBRARY_FAILOVER") != "1":
            pytest.skip("set LECTERN_LIBRARY_FAILOVER=1 to take the primary away")
        if not library["lectern_library_replica_paths"]:
            pytest.skip("no replicas")
        root = library["lectern_library_root"]
        primary = f"{root}/sources/primary"
        unit = {"smb": "lectern-library-smb.service", "local": f"{_unit_name(primary)}.mount"}.get(
            library["lectern_library_mode"]
        )
        if unit is None or not host.service(unit).is_running:
            pytest.skip("no primary unit to stop in this mode")
        assert _link(host, library) == "sources/primary"
        host.check_output(f"systemctl stop {unit}")
        try:
            assert not host.file(f"{primary}/metadata.db").exists  # an empty mountpoint now
            # the health timer (not the test) must move the stable path
            assert _wait_link(host, library, "sources/replica1") == "sources/replica1"
            assert _count(host, f"{root}/library") > 0
        finally:
            host.check_output(f"systemctl start {unit}")
        assert _wait_link(host, library, "sources/primary") == "sources/primary"


class TestLibrarySourceAbsent:
    """lectern_library_state=absent: units, mounts, config and credentials are gone."""

    @pytest.fixture(autouse=True)
    def _only_absent(self, library_state: str) -> None:
        if library_state != "absent":
            pytest.skip("host provisioned with lectern_library_state=present")

    def test_units_removed(self, host: Any, library: dict[str, Any]) -> None:
        sources = _unit_name(f"{library['lectern_library_root']}/sources")
        left = host.run(
            f"ls /etc/systemd/system/lectern-library-* /etc/systemd/system/{sources}-* 2>/dev/null"
        )
        assert left.stdout.strip() == ""
        assert not host.service("lectern-library-health.timer").is_running

    def test_config_removed(self, host: Any, library: dict[str, Any]) -> None:
        config_dir = library["lectern_library_config_dir"]
        for name in (
            "library-source",
            "smb-credentials",
            "rclone.conf",
            "rclone.conf.sha256",
            "onedrive",
        ):
            assert not host.file(f"{config_dir}/{name}").exists, name
        assert not host.file(TOOL).exists

    def test_stable_path_and_views_removed(self, host: Any, library: dict[str, Any]) -> None:
        root = library["lectern_library_root"]
        assert not host.file(f"{root}/library").exists
        assert not host.file(f"{root}/library").is_symlink
        assert not host.file(f"{root}/sources").exists
        assert not host.file(f"{root}/rclone").exists
        assert "lectern" not in host.check_output("grep -c fuse.rclone /proc/mounts || true")

    def test_user_data_kept(self, host: Any, library: dict[str, Any]) -> None:
        for path in library["lectern_library_replica_paths"]:
            assert host.file(f"{path}/metadata.db").is_file, f"replica {path} was deleted"
        local = library["lectern_library_local_path"]
        if library["lectern_library_mode"] == "local" and local:
            assert host.file(f"{local}/metadata.db").is_file


class TestLibrarySourceRcloneCorrupt:
    """rclone mode: a corrupt staged metadata.db is never switched in."""

    def test_corrupt_copy_not_switched_in(
        self, host: Any, library: dict[str, Any], library_state: str
    ) -> None:
        remote_dir = os.environ.get("LECTERN_LIBRARY_REMOTE_DIR")
        if library_state != "present" or library["lectern_library_mode"] != "rclone":
            pytest.skip("rclone mode, present only")
        if not remote_dir:
            pytest.skip("set LECTERN_LIBRARY_REMOTE_DIR to the remote's folder on the host")
        root = library["lectern_library_root"]
        current = host.check_output(f"readlink {root}/rclone/current")
        books = _count(host, f"{root}/library")
        database = f"{remote_dir}/metadata.db"
        host.check_output(f"cp -p {database} /root/metadata.db.good")
        try:
            host.check_output(
                f"dd if=/dev/urandom of={database} bs=1024 seek=1 count=16 conv=notrunc status=none"
            )
            sync = host.run("/usr/local/sbin/lectern-library rclone-sync")
            assert sync.rc != 0
            assert "NOT switched in" in sync.stdout
            assert host.check_output(f"readlink {root}/rclone/current") == current
            assert _count(host, f"{root}/library") == books
        finally:
            host.check_output(f"cp -p /root/metadata.db.good {database}")
        good = host.run("/usr/local/sbin/lectern-library rclone-sync")
        assert good.rc == 0, good.stdout + good.stderr
        assert host.check_output(f"readlink {root}/rclone/current") != current  # a/b swapped
        assert _count(host, f"{root}/library") == books
