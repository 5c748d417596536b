"""roles/updates and appliance/deploys/updates.py: one set of host assertions for both engines.

Run by molecule (roles/updates/molecule/*) and against lab hosts like test_base.py.
Expected values come from the host's variables (conftest.py: the `updates` fixture, which
also carries the roles/appliance variables the role reads). What the host must carry
depends on the effective mode: lectern_updates_mode when lectern_updates_state=present,
nothing at all when absent.
Optional environment:
  LECTERN_UPDATES_EXERCISE=1  also start lectern-update.service and check the command line
                              the stub lectern-release of roles/updates/molecule recorded,
                              and that a failing run calls the notify script (molecule
                              only: on a lab host it would run a real update)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest

from appliance.deploys.updates import compose_project, container, overlay_path, render_overlay

Render = Callable[[str, str, dict[str, Any]], str]
ROLE = "updates"
UNITS = ("lectern-update.service", "lectern-update.timer")
EXERCISE = os.environ.get("LECTERN_UPDATES_EXERCISE") == "1"
STUB = "/var/lib/lectern-update-stub"  # written by roles/updates/molecule/*/prepare.yml


@pytest.fixture(scope="module")
def mode(updates: dict[str, Any], updates_state: str) -> str:
    """The mode the host must show: none when the role is absent."""
    return str(updates["lectern_updates_mode"]) if updates_state == "present" else "none"


def _has_docker(host: Any) -> bool:
    return bool(host.run("command -v docker && systemctl is-active --quiet docker").rc == 0)


class TestAgent:
    """lectern_updates_mode=agent."""

    @pytest.fixture(autouse=True)
    def _only_agent(self, mode: str) -> None:
        if mode != "agent":
            pytest.skip(f"effective mode is {mode}")

    def test_units(self, host: Any, updates: dict[str, Any], render: Render) -> None:
        for unit in UNITS:
            f = host.file(f"/etc/systemd/system/{unit}")
            assert f.user == "root" and f.mode == 0o644, unit
            assert f.content_string == render(ROLE, f"{unit}.j2", updates), unit
        timer = host.file("/etc/systemd/system/lectern-update.timer").content_string
        assert f"OnCalendar={updates['lectern_updates_schedule']}\n" in timer
        assert f"RandomizedDelaySec={updates['lectern_updates_randomized_delay']}\n" in timer
        assert "Persistent=true\n" in timer
        service = host.file("/etc/systemd/system/lectern-update.service").content_string
        assert "Type=oneshot\n" in service

    def test_timer_enabled_and_active(self, host: Any) -> None:
        timer = host.service("lectern-update.timer")
        assert timer.is_enabled and timer.is_running
        assert "lectern-update.timer" in host.check_output("systemctl list-timers --no-legend")

    def test_systemd_analyze_verify_clean(self, host: Any) -> None:
        units = " ".join(f"/etc/systemd/system/{u}" for u in UNITS)
        out = host.run(f"systemd-analyze verify {units}")
        assert out.rc == 0, out.stderr
        ours = [line for line in out.stderr.splitlines() if "lectern-update" in line]
        assert not ours, ours

    def test_command_line(self, host: Any, updates: dict[str, Any]) -> None:
        show = host.check_output("systemctl show -p ExecStart lectern-update.service")
        tool = updates["lectern_appliance_release_tool"]
        assert f"path={tool} ;" in show
        assert f"argv[]={tool} agent --channel {updates['lectern_updates_channel']}" in show

    def test_notify_script(self, host: Any, updates: dict[str, Any], render: Render) -> None:
        config_dir = host.file(updates["lectern_updates_config_dir"])
        assert config_dir.is_directory and config_dir.mode == 0o700 and config_dir.user == "root"
        notify = host.file(f"{updates['lectern_updates_config_dir']}/notify")
        if updates["lectern_updates_notify"]:
            assert notify.user == "root" and notify.mode == 0o700
            assert notify.content_string == render(ROLE, "notify.j2", updates)
        else:
            assert not notify.exists

    def test_no_watchtower(self, host: Any, updates: dict[str, Any]) -> None:
        _assert_no_watchtower(host, updates)

    def test_service_runs_the_agent(self, host: Any, updates: dict[str, Any]) -> None:
        if not EXERCISE:
            pytest.skip("LECTERN_UPDATES_EXERCISE=1 not set")
        host.run(f"rm -f {STUB}/args {STUB}/fail {STUB}/notified")
        out = host.run("systemctl start lectern-update.service")
        assert out.rc == 0, out.stderr
        expected = ["agent", "--channel", updates["lectern_updates_channel"]]
        if updates["lectern_updates_notify"]:
            expected += ["--notify", f"{updates['lectern_updates_config_dir']}/notify"]
        assert host.file(f"{STUB}/args").content_string.splitlines() == expected
        assert not host.file(f"{STUB}/notified").exists

    def test_failed_update_notifies(self, host: Any, updates: dict[str, Any]) -> None:
        if not EXERCISE or not updates["lectern_updates_notify"]:
            pytest.skip("LECTERN_UPDATES_EXERCISE=1 with a notify command only")
        host.run_test(f"rm -f {STUB}/notified && touch {STUB}/fail")
        try:
            out = host.run("systemctl start lectern-update.service")
            assert out.rc != 0  # the unit fails: visible in systemctl --failed and the journal
            assert host.service("lectern-update.service").is_running is False
            state = host.check_output("systemctl show -p Result --value lectern-update.service")
            assert state == "exit-code"
            notified = host.file(f"{STUB}/notified").content_string
            assert "health gate" in notified
        finally:
            host.run(f"rm -f {STUB}/fail; systemctl reset-failed lectern-update.service")


class TestWatchtower:
    """lectern_updates_mode=watchtower (no health gate, no rollback)."""

    @pytest.fixture(autouse=True)
    def _only_watchtower(self, mode: str) -> None:
        if mode != "watchtower":
            pytest.skip(f"effective mode is {mode}")

    def test_overlay(self, host: Any, updates: dict[str, Any]) -> None:
        overlay = host.file(overlay_path(updates))
        assert overlay.user == "root" and overlay.mode == 0o600
        assert overlay.content_string == render_overlay(updates)

    def test_container(self, host: Any, updates: dict[str, Any]) -> None:
        data = json.loads(host.check_output(f"docker inspect {container(updates)}"))[0]
        assert data["State"]["Running"]
        assert data["Config"]["Image"] == updates["lectern_updates_watchtower_image"]
        labels = data["Config"]["Labels"]
        assert labels["com.docker.compose.project"] == compose_project(updates)
        assert labels["com.centurylinklabs.watchtower.enable"] == "false"
        args = data["Args"]
        assert "--label-enable" in args
        assert f"--scope={updates['lectern_appliance_project']}" in args
        assert f"--interval={updates['lectern_updates_watchtower_interval']}" in args
        assert ("--monitor-only" in args) == bool(
            updates["lectern_updates_watchtower_monitor_only"]
        )
        assert data["HostConfig"]["Binds"] == ["/var/run/docker.sock:/var/run/docker.sock:rw"]

    def test_no_agent(self, host: Any, updates: dict[str, Any]) -> None:
        _assert_no_agent(host, updates)


class TestNothingUnattended:
    """lectern_updates_mode=controlled, or lectern_updates_state=absent: nothing of the role."""

    @pytest.fixture(autouse=True)
    def _only_nothing(self, mode: str) -> None:
        if mode not in ("controlled", "none"):
            pytest.skip(f"effective mode is {mode}")

    def test_no_agent(self, host: Any, updates: dict[str, Any]) -> None:
        _assert_no_agent(host, updates)

    def test_no_watchtower(self, host: Any, updates: dict[str, Any]) -> None:
        _assert_no_watchtower(host, updates)


def _assert_no_agent(host: Any, updates: dict[str, Any]) -> None:
    for unit in UNITS:
        assert not host.file(f"/etc/systemd/system/{unit}").exists, unit
    assert not host.file(updates["lectern_updates_config_dir"]).exists
    assert "lectern-update" not in host.check_output("systemctl list-timers --all --no-legend")


def _assert_no_watchtower(host: Any, updates: dict[str, Any]) -> None:
    assert not host.file(overlay_path(updates)).exists
    if _has_docker(host):
        name = container(updates)
        assert not host.check_output(f"docker ps -aq --filter name=^/{name}$"), name
        network = f"{compose_project(updates)}_default"
        assert not host.check_output(f"docker network ls -q --filter name=^{network}$")
