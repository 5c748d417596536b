"""roles/appliance and appliance/deploys/appliance.py: one set of host assertions.

Run by molecule (roles/appliance/molecule/default) and against lab hosts, like
test_base.py. The expected state is ``--lectern-state`` if given, else the host's
``lectern_appliance_state``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from appliance.deploys.appliance import release_ref, render_compose
from appliance.roles import REPO_ROOT, role_vars

Render = Callable[[str, str, dict[str, Any]], str]


@pytest.fixture(scope="module")
def app(host: Any, file_overrides: dict[str, Any]) -> dict[str, Any]:
    """The variables of roles/appliance as the host was provisioned with them."""
    data: dict[str, Any] = {}
    get_variables = getattr(host.backend, "get_variables", None)
    if get_variables is not None:
        data.update(get_variables())
    data.update(file_overrides)
    return role_vars("appliance", data)


@pytest.fixture(scope="module")
def app_state(pytestconfig: pytest.Config, app: dict[str, Any]) -> str:
    return str(pytestconfig.getoption("lectern_state") or app["lectern_appliance_state"])


def _release_status(host: Any, app: dict[str, Any]) -> dict[str, Any]:
    out = host.check_output(f"{app['lectern_appliance_release_tool']} status --json")
    status: dict[str, Any] = json.loads(out)
    return status


def _slot(host: Any, app: dict[str, Any]) -> str:
    active = _release_status(host, app)["active"]
    assert active, "the release tool records no serving release"
    return str(active["slot"])


def _container(host: Any, app: dict[str, Any]) -> str:
    """The serving release's container: <project>-app-<slot>."""
    return f"{app['lectern_appliance_project']}-app-{_slot(host, app)}"


def _inspect(host: Any, name: str) -> dict[str, Any]:
    data = json.loads(host.check_output(f"docker inspect {name}"))
    assert isinstance(data, list) and data
    result: dict[str, Any] = data[0]
    return result


def _secret_values(app: dict[str, Any]) -> list[str]:
    values = [str(v) for v in app["lectern_appliance_secrets"].values()]
    if app["lectern_appliance_postgres_password"]:
        values.append(str(app["lectern_appliance_postgres_password"]))
    return [v for v in values if v]


class TestPresent:
    """lectern_appliance_state=present."""

    @pytest.fixture(autouse=True)
    def _only_present(self, app_state: str) -> None:
        if app_state != "present":
            pytest.skip("host provisioned with lectern_appliance_state=absent")

    def test_stack_dir(self, host: Any, app: dict[str, Any]) -> None:
        d = host.file(app["lectern_appliance_dir"])
        assert d.is_directory
        assert d.user == "root"
        assert d.mode == 0o755

    def test_compose_file_is_the_rendered_template(self, host: Any, app: dict[str, Any]) -> None:
        f = host.file(f"{app['lectern_appliance_dir']}/docker-compose.yml")
        assert f.user == "root"
        assert f.mode == 0o644
        assert f.content_string == render_compose(app)
        for secret in _secret_values(app):
            assert secret not in f.content_string, "a secret leaked into the compose file"

    def test_env_file(self, host: Any, app: dict[str, Any], render: Render) -> None:
        f = host.file(f"{app['lectern_appliance_dir']}/.env")
        assert f.user == "root"
        assert f.group == "root"
        assert f.mode == 0o600
        assert f.content_string == render("appliance", "env.j2", app)

    def test_data_dir(self, host: Any, app: dict[str, Any]) -> None:
        d = host.file(app["lectern_appliance_data_dir"])
        assert d.is_directory
        assert d.uid == app["lectern_appliance_uid"]
        assert d.gid == app["lectern_appliance_gid"]
        assert d.mode == 0o700  # password hashes, the signing key

    def test_container_runs_pinned_image_as_service_uid(
        self, host: Any, app: dict[str, Any]
    ) -> None:
        c = _inspect(host, _container(host, app))
        assert c["State"]["Running"]
        image, ref = app["lectern_appliance_image"], release_ref(app)
        if ref.startswith("sha256:"):
            assert c["Config"]["Image"] == f"{image}@{ref}"
        else:  # a tag: deployed by the digest it resolved to, recorded in the ledger
            digest = _release_status(host, app)["active"]["digest"]
            assert c["Config"]["Image"] == f"{image}@{digest}"
        assert (
            c["Config"]["User"] == f"{app['lectern_appliance_uid']}:{app['lectern_appliance_gid']}"
        )
        pid = c["State"]["Pid"]
        uid = host.check_output(f"stat -c %u /proc/{pid}")
        assert int(uid) == app["lectern_appliance_uid"]

    def test_container_healthy(self, host: Any, app: dict[str, Any]) -> None:
        # the image healthcheck runs every interval (30 s): allow for the first one
        status = ""
        for _ in range(40):
            status = host.check_output(
                "docker inspect -f '{{.State.Health.Status}}' " + _container(host, app)
            )
            if status != "starting":
                break
            time.sleep(3)
        assert status == "healthy"

    def test_health_endpoint_answers_on_the_host(self, host: Any, app: dict[str, Any]) -> None:
        bind = app["lectern_appliance_bind_address"]
        address = "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind
        port = app["lectern_appliance_slot_ports"][_slot(host, app)]
        url = f"http://{address}:{port}{app['lectern_appliance_health_path']}"
        code = host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' {url}")
        assert code == "200"
        body = json.loads(host.check_output(f"curl -fsS {url}"))
        assert body["status"] in ("healthy", "degraded")

    def test_restart_policy_and_log_rotation(self, host: Any, app: dict[str, Any]) -> None:
        hc = _inspect(host, _container(host, app))["HostConfig"]
        assert hc["RestartPolicy"]["Name"] == app["lectern_appliance_restart"]
        assert hc["LogConfig"]["Type"] == "json-file"
        assert hc["LogConfig"]["Config"] == {
            "max-size": str(app["lectern_appliance_log_max_size"]),
            "max-file": str(app["lectern_appliance_log_max_file"]),
        }
        assert hc["ReadonlyRootfs"] is True

    def test_mounts(self, host: Any, app: dict[str, Any]) -> None:
        mounts = {m["Destination"]: m for m in _inspect(host, _container(host, app))["Mounts"]}
        assert mounts["/data"]["Source"] == app["lectern_appliance_data_dir"]
        assert mounts["/data"]["RW"] is True
        root = app["lectern_appliance_library_mount"]
        if root:  # library_source's root at the same path, read-only, mounts propagating
            assert mounts[root]["Source"] == root
            assert mounts[root]["RW"] is False
            assert mounts[root]["Propagation"] == "rslave"
        else:
            assert mounts["/library"]["Source"] == app["lectern_appliance_library_path"]
            assert mounts["/library"]["RW"] is False

    def test_release_tool(self, host: Any, app: dict[str, Any]) -> None:
        tool = host.file(app["lectern_appliance_release_tool"])
        assert tool.mode == 0o755
        assert tool.user == "root"
        assert tool.content_string == (REPO_ROOT / "rollback" / "lectern_release.py").read_text()
        assert host.run(f"{app['lectern_appliance_release_tool']} --help").rc == 0

    def test_release_config_is_the_rendered_template(
        self, host: Any, app: dict[str, Any], render: Render
    ) -> None:
        f = host.file(app["lectern_appliance_release_config"])
        assert f.user == "root" and f.mode == 0o644
        assert f.content_string == render("appliance", "release.json.j2", app)
        assert json.loads(f.content_string)["image"] == app["lectern_appliance_image"]

    def test_one_healthy_release_recorded(self, host: Any, app: dict[str, Any]) -> None:
        status = _release_status(host, app)
        assert status["healthy"] is True and status["in_progress"] is None
        assert status["last"][-1]["outcome"] == "ok"
        slot = status["active"]["slot"]
        project = app["lectern_appliance_project"]
        running = host.check_output(
            "docker ps --filter label=org.lectern.role=app --format '{{.Names}}'"
        ).split()
        assert running == [f"{project}-app-{slot}"]  # the other slot was drained and stopped

    def test_converge_unit_enabled(self, host: Any) -> None:
        unit = host.service("lectern-release-converge")
        assert unit.is_enabled
        assert host.run("systemd-analyze verify lectern-release-converge.service").rc == 0

    def test_redeploy_is_a_no_op(self, host: Any, app: dict[str, Any]) -> None:
        ref = release_ref(app)
        out = host.check_output(f"{app['lectern_appliance_release_tool']} deploy --dry-run {ref}")
        assert out.startswith("unchanged"), out


class TestAbsent:
    """lectern_appliance_state=absent: stack gone, data kept unless purged."""

    @pytest.fixture(autouse=True)
    def _only_absent(self, app_state: str) -> None:
        if app_state != "absent":
            pytest.skip("host provisioned with lectern_appliance_state=present")

    def test_no_container_of_the_stack(self, host: Any, app: dict[str, Any]) -> None:
        if host.run("systemctl is-active --quiet docker").rc != 0:
            pytest.skip("engine off: nothing of it runs")
        ids = host.check_output(
            "docker ps -aq --filter label=org.lectern.app=" + app["lectern_appliance_project"]
        )
        assert ids == ""

    def test_files_removed(self, host: Any, app: dict[str, Any]) -> None:
        for path in (
            app["lectern_appliance_dir"],
            app["lectern_appliance_release_tool"],
            app["lectern_appliance_release_config"],
            "/etc/systemd/system/lectern-release-converge.service",
        ):
            assert not host.file(path).exists, path

    def test_data_kept_unless_purged(self, host: Any, app: dict[str, Any]) -> None:
        exists = host.file(app["lectern_appliance_data_dir"]).exists
        assert exists != app["lectern_appliance_purge_data"]
