"""roles/base and appliance/deploys/base.py: one set of host assertions for both engines.

Run by molecule (roles/base/molecule/*) and against lab hosts:
    pytest tests/infra/host --hosts=ssh://admin@IP --ssh-identity-file=KEY --sudo
    pytest tests/infra/host ... --lectern-state=absent   # after the OFF path
See conftest.py for where the expected values come from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

Render = Callable[[str, str, dict[str, Any]], str]

JOURNALD_DROPIN = "/etc/systemd/journald.conf.d/50-lectern.conf"


def _is_pi(host: Any, base: dict[str, Any]) -> bool:
    model = host.file(base["lectern_base_pi_model_path"])
    return bool(model.exists and "Raspberry Pi" in model.content_string)


class TestPresent:
    """lectern_base_state=present."""

    @pytest.fixture(autouse=True)
    def _only_present(self, lectern_state: str) -> None:
        if lectern_state != "present":
            pytest.skip("host provisioned with lectern_base_state=absent")

    def test_packages_installed(self, host: Any, base: dict[str, Any]) -> None:
        wanted = base["lectern_base_packages"] + base["lectern_base_extra_packages"]
        missing = [name for name in wanted if not host.package(name).is_installed]
        assert not missing, f"packages not installed: {missing}"

    def test_service_group(self, host: Any, base: dict[str, Any]) -> None:
        group = host.group(base["lectern_base_group"])
        assert group.exists
        assert group.gid == base["lectern_base_gid"]

    def test_service_user(self, host: Any, base: dict[str, Any]) -> None:
        user = host.user(base["lectern_base_user"])
        assert user.exists
        assert user.uid == base["lectern_base_uid"]
        assert user.gid == base["lectern_base_gid"]
        assert user.group == base["lectern_base_group"]
        assert user.home == base["lectern_base_home"]
        assert user.shell == base["lectern_base_shell"]

    def test_service_home(self, host: Any, base: dict[str, Any]) -> None:
        home = host.file(base["lectern_base_home"])
        assert home.is_directory
        assert home.uid == base["lectern_base_uid"]
        assert home.gid == base["lectern_base_gid"]
        assert home.mode == 0o750

    def test_timezone(self, host: Any, base: dict[str, Any]) -> None:
        tz = base["lectern_base_timezone"]
        localtime = host.file("/etc/localtime")
        assert localtime.is_symlink
        assert localtime.linked_to == f"/usr/share/zoneinfo/{tz}"
        assert host.file(f"/usr/share/zoneinfo/{tz}").exists
        assert host.file("/etc/timezone").content_string == f"{tz}\n"

    def test_locale(self, host: Any, base: dict[str, Any], render: Render) -> None:
        locale = host.file("/etc/default/locale")
        assert locale.user == "root"
        assert locale.mode == 0o644
        assert locale.content_string == render("base", "locale.j2", base)
        assert f"LANG={base['lectern_base_locale']}\n" in locale.content_string

    def test_hostname(self, host: Any, base: dict[str, Any]) -> None:
        name = base["lectern_base_hostname"]
        if not name:
            pytest.skip("lectern_base_hostname is empty: hostname left untouched")
        assert host.check_output("hostname") == name
        assert host.file("/etc/hostname").content_string.strip() == name

    def test_journald_dropin(self, host: Any, base: dict[str, Any], render: Render) -> None:
        dropin = host.file(JOURNALD_DROPIN)
        assert dropin.is_file
        assert dropin.user == "root"
        assert dropin.group == "root"
        assert dropin.mode == 0o644
        assert dropin.content_string == render("base", "journald-lectern.conf.j2", base)
        assert base["lectern_managed"] in dropin.content_string
        assert f"SystemMaxUse={base['lectern_base_journald_system_max_use']}\n" in (
            dropin.content_string
        )

    def test_journald_running(self, host: Any) -> None:
        assert host.service("systemd-journald").is_running

    def test_config_dir(self, host: Any, base: dict[str, Any]) -> None:
        config_dir = host.file(base["lectern_base_config_dir"])
        assert config_dir.is_directory
        assert config_dir.user == "root"
        assert config_dir.mode == 0o755

    def test_release_marker(self, host: Any, base: dict[str, Any], render: Render) -> None:
        marker = host.file(f"{base['lectern_base_config_dir']}/release")
        assert marker.is_file
        assert marker.user == "root"
        assert marker.group == "root"
        assert marker.mode == 0o644
        content = marker.content_string
        assert content == render("base", "release.j2", base)
        assert content.startswith(f"# {base['lectern_managed']}\n")
        assert f"LECTERN_VERSION={base['lectern_base_version']}\n" in content
        assert f"LECTERN_PROFILE={base['lectern_base_profile']}\n" in content
        assert "LECTERN_ROLE=base\n" in content

    def test_pi_specifics(self, host: Any, base: dict[str, Any]) -> None:
        if not _is_pi(host, base):
            pytest.skip("not a Raspberry Pi")
        configs = [host.file(p) for p in ("/boot/firmware/config.txt", "/boot/config.txt")]
        config = next((c for c in configs if c.exists), None)
        if config is not None:
            assert f"gpu_mem={base['lectern_base_pi_gpu_mem']}\n" in config.content_string
        swapfile = host.service("dphys-swapfile")
        if base["lectern_base_pi_disable_swapfile"] and host.exists("dphys-swapfile"):
            assert not swapfile.is_running
            assert not swapfile.is_enabled


class TestAbsent:
    """lectern_base_state=absent: what the role added is gone, what the host needs stays."""

    @pytest.fixture(autouse=True)
    def _only_absent(self, lectern_state: str) -> None:
        if lectern_state != "absent":
            pytest.skip("host provisioned with lectern_base_state=present")

    def test_release_marker_removed(self, host: Any, base: dict[str, Any]) -> None:
        assert not host.file(f"{base['lectern_base_config_dir']}/release").exists

    def test_config_dir_removed_or_still_used(self, host: Any, base: dict[str, Any]) -> None:
        config_dir = base["lectern_base_config_dir"]
        if host.file(config_dir).exists:  # other roles' files keep it
            assert host.check_output(f"ls -A {config_dir}"), f"{config_dir} left empty"

    def test_journald_dropin_removed(self, host: Any) -> None:
        assert not host.file(JOURNALD_DROPIN).exists
        assert host.service("systemd-journald").is_running

    def test_service_user_removed(self, host: Any, base: dict[str, Any]) -> None:
        assert not host.user(base["lectern_base_user"]).exists
        assert not host.group(base["lectern_base_group"]).exists

    def test_service_home_removed_or_kept_with_data(self, host: Any, base: dict[str, Any]) -> None:
        home = base["lectern_base_home"]
        if host.file(home).exists:  # kept only when something is in it
            assert host.check_output(f"ls -A {home}"), f"{home} left empty"

    def test_packages_kept(self, host: Any, base: dict[str, Any]) -> None:
        # The OFF path never removes packages: the host may depend on them.
        missing = [p for p in base["lectern_base_packages"] if not host.package(p).is_installed]
        assert not missing, f"packages removed by the OFF path: {missing}"
