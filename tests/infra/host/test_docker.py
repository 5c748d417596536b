"""roles/docker and appliance/deploys/docker.py: one set of host assertions for both engines.

Run by molecule (roles/docker/molecule/default, roles/appliance/molecule/default) and
against lab hosts, like test_base.py (see conftest.py for where expected values come
from). The expected state is ``--lectern-state`` if given, else the host's
``lectern_docker_state``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from appliance.roles import role_vars

Render = Callable[[str, str, dict[str, Any]], str]

DAEMON_JSON = "/etc/docker/daemon.json"
CMDLINE_TXT = ("/boot/firmware/cmdline.txt", "/boot/cmdline.txt")


@pytest.fixture(scope="module")
def docker(host: Any, file_overrides: dict[str, Any]) -> dict[str, Any]:
    """The variables of roles/docker as the host was provisioned with them."""
    data: dict[str, Any] = {}
    get_variables = getattr(host.backend, "get_variables", None)
    if get_variables is not None:
        data.update(get_variables())
    data.update(file_overrides)
    return role_vars("docker", data)


@pytest.fixture(scope="module")
def docker_state(pytestconfig: pytest.Config, docker: dict[str, Any]) -> str:
    return str(pytestconfig.getoption("lectern_state") or docker["lectern_docker_state"])


def _packages(docker: dict[str, Any]) -> list[str]:
    engine = (
        docker["lectern_docker_distribution_packages"]
        if docker["lectern_docker_source"] == "distribution"
        else docker["lectern_docker_repo_packages"]
    )
    return [*engine, *docker["lectern_docker_compose_packages"]]


def _is_pi(host: Any, docker: dict[str, Any]) -> bool:
    model = host.file(docker["lectern_docker_pi_model_path"])
    return bool(model.exists and "Raspberry Pi" in model.content_string)


def _cmdline(host: Any) -> list[str] | None:
    for path in CMDLINE_TXT:
        f = host.file(path)
        if f.exists:
            return list(f.content_string.split())
    return None


class TestPresent:
    """lectern_docker_state=present."""

    @pytest.fixture(autouse=True)
    def _only_present(self, docker_state: str) -> None:
        if docker_state != "present":
            pytest.skip("host provisioned with lectern_docker_state=absent")

    def test_packages_installed(self, host: Any, docker: dict[str, Any]) -> None:
        missing = [p for p in _packages(docker) if not host.package(p).is_installed]
        assert not missing, f"packages not installed: {missing}"

    def test_engine_running_and_enabled(self, host: Any) -> None:
        engine = host.service("docker")
        assert engine.is_running
        assert engine.is_enabled

    def test_daemon_json_rendered(self, host: Any, docker: dict[str, Any], render: Render) -> None:
        daemon = host.file(DAEMON_JSON)
        assert daemon.is_file
        assert daemon.user == "root"
        assert daemon.mode == 0o644
        assert daemon.content_string == render("docker", "daemon.json.j2", docker)
        config = json.loads(daemon.content_string)  # valid JSON: dockerd refuses anything else
        assert config["insecure-registries"] == docker["lectern_docker_insecure_registries"]

    def test_engine_uses_the_configuration(self, host: Any, docker: dict[str, Any]) -> None:
        out = host.check_output(
            "docker info --format '{{.LoggingDriver}} {{.LiveRestoreEnabled}} {{.Driver}}'"
        )
        driver, live_restore, storage = out.split()
        assert driver == docker["lectern_docker_log_driver"]
        assert live_restore == str(docker["lectern_docker_live_restore"]).lower()
        if docker["lectern_docker_storage_driver"]:
            assert storage == docker["lectern_docker_storage_driver"]
        registries = json.loads(
            host.check_output("docker info --format '{{json .RegistryConfig.IndexConfigs}}'")
        )
        for registry in docker["lectern_docker_insecure_registries"]:
            assert registry in registries and not registries[registry]["Secure"]

    def test_log_rotation_applies_to_new_containers(
        self, host: Any, docker: dict[str, Any]
    ) -> None:
        if docker["lectern_docker_log_driver"] not in ("json-file", "local"):
            pytest.skip("log driver without size rotation")
        config = json.loads(host.file(DAEMON_JSON).content_string)
        assert config["log-opts"] == {
            "max-size": str(docker["lectern_docker_log_max_size"]),
            "max-file": str(docker["lectern_docker_log_max_file"]),
        }

    def test_compose_tool(self, host: Any) -> None:
        assert "docker-compose version" in host.check_output("docker-compose version")

    def test_architecture_recorded(self, host: Any, docker: dict[str, Any], render: Render) -> None:
        arch = host.check_output("dpkg --print-architecture")
        record = host.file(f"{docker['lectern_docker_config_dir']}/docker-arch")
        assert record.mode == 0o644
        assert record.content_string == render(
            "docker", "docker-arch.j2", {**docker, "docker__arch": arch}
        )
        platform = docker["lectern_docker_platforms"].get(arch, f"linux/{arch}")
        assert f"LECTERN_DOCKER_PLATFORM={platform}\n" in record.content_string
        engine_arch = host.check_output("docker info --format '{{.Architecture}}'")
        expected = {"amd64": "x86_64", "arm64": "aarch64", "i386": "i686"}.get(arch, "arm")
        assert engine_arch.startswith(expected)

    def test_docker_group_is_not_given_away(self, host: Any, docker: dict[str, Any]) -> None:
        members = host.group("docker").members if host.group("docker").exists else []
        assert sorted(members) == sorted(docker["lectern_docker_group_members"])

    def test_pull_from_the_registry(self, host: Any, docker: dict[str, Any]) -> None:
        registries = docker["lectern_docker_insecure_registries"]
        if not registries:
            pytest.skip("no insecure (lab/local) registry configured")
        registry = registries[0]
        catalog = json.loads(host.check_output(f"curl -fsS http://{registry}/v2/_catalog"))
        repos = sorted(catalog.get("repositories") or [])
        if not repos:
            pytest.skip(f"registry {registry} is empty")
        for repo in repos:
            tags = json.loads(host.check_output(f"curl -fsS http://{registry}/v2/{repo}/tags/list"))
            if tags.get("tags"):
                ref = f"{registry}/{repo}:{sorted(tags['tags'])[0]}"
                pull = host.run(f"timeout 180 docker pull -q {ref}")
                assert pull.rc == 0, f"docker pull {ref} failed: {pull.stderr}"
                return
        pytest.skip(f"registry {registry} has no tagged image")

    def test_pi_memory_cgroup(self, host: Any, docker: dict[str, Any]) -> None:
        if not _is_pi(host, docker):
            pytest.skip("not a Raspberry Pi")
        tokens = _cmdline(host)
        if tokens is not None:
            assert all(t in tokens for t in docker["lectern_docker_pi_cmdline"])


class TestAbsent:
    """lectern_docker_state=absent: engine off, Lectern's files gone, data kept."""

    @pytest.fixture(autouse=True)
    def _only_absent(self, docker_state: str) -> None:
        if docker_state != "absent":
            pytest.skip("host provisioned with lectern_docker_state=present")

    def test_engine_stopped_and_disabled(self, host: Any) -> None:
        for unit in ("docker", "docker.socket"):
            service = host.service(unit)
            assert not service.is_running, f"{unit} still running"
            assert not service.is_enabled, f"{unit} still enabled"

    def test_no_container_runs(self, host: Any) -> None:
        # live-restore would keep them running without an engine: the OFF path stops them
        assert host.run("pgrep -f '[c]ontainerd-shim'").rc != 0

    def test_files_removed(self, host: Any, docker: dict[str, Any]) -> None:
        assert not host.file(DAEMON_JSON).exists
        assert not host.file(f"{docker['lectern_docker_config_dir']}/docker-arch").exists

    def test_packages_and_images_kept_unless_purged(
        self, host: Any, docker: dict[str, Any]
    ) -> None:
        installed = [p for p in _packages(docker) if host.package(p).is_installed]
        if docker["lectern_docker_purge"]:
            assert not installed
            assert not host.run("ls -A /var/lib/docker").stdout.strip()
        else:
            assert installed == _packages(docker)

    def test_pi_memory_cgroup_removed(self, host: Any, docker: dict[str, Any]) -> None:
        if not _is_pi(host, docker):
            pytest.skip("not a Raspberry Pi")
        tokens = _cmdline(host)
        if tokens is not None:
            assert not any(t in tokens for t in docker["lectern_docker_pi_cmdline"])
