"""Fixtures of the engine-agnostic host suite (tests/infra/host).

The suite asserts what roles/base (Ansible) and appliance/deploys/base.py (pyinfra) must
both leave on a host. It never assumes a connection type: it runs as molecule's
testinfra verifier (``--connection=ansible`` on molecule's inventory) and against lab
hosts (``--hosts=ssh://admin@IP --ssh-identity-file=KEY --sudo``).

Expected values come from roles/base/defaults/main.yml (via appliance.roles, the same
merge the pyinfra deploy uses), overridden by, in this order:
  * the host's inventory variables, when the connection is Ansible's;
  * YAML files given with ``--lectern-vars FILE`` (repeatable; or $LECTERN_BASE_VARS),
    e.g. the host's group_vars when it is reached over plain SSH.
Each role has its module test_<role>.py; ``--lectern-roles`` (or $LECTERN_ROLES) picks
some, molecule picks the role under test, a lab host runs all of them.
The expected state (present|absent) is ``--lectern-state`` (or $LECTERN_BASE_STATE),
else the host's ``lectern_base_state`` from those variables (default ``present``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from appliance.roles import role_vars, template_path


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lectern")
    group.addoption(
        "--lectern-state",
        dest="lectern_state",
        choices=["present", "absent"],
        default=os.environ.get("LECTERN_BASE_STATE") or None,
        help="state the host was provisioned with (default: $LECTERN_BASE_STATE, else the"
        " host's lectern_base_state from the variables below, else present)",
    )
    group.addoption(
        "--lectern-roles",
        dest="lectern_roles",
        default="",
        help="comma-separated roles whose test_<role>.py runs (default: $LECTERN_ROLES, under"
        " molecule the role being tested, else all)",
    )
    group.addoption(
        "--lectern-vars",
        dest="lectern_vars",
        action="append",
        default=[p for p in os.environ.get("LECTERN_BASE_VARS", "").split(os.pathsep) if p],
        help="YAML file of variables the host was provisioned with (e.g. its group_vars);"
        " repeat for several, later files win ($LECTERN_BASE_VARS: os.pathsep-separated)",
    )


def _selected_roles(config: pytest.Config) -> set[str] | None:
    """Roles whose test_<role>.py runs; None = all (a lab host carries every role)."""
    value = config.getoption("lectern_roles") or os.environ.get("LECTERN_ROLES", "")
    if not value and os.environ.get("MOLECULE_PROJECT_DIRECTORY"):
        # molecule of roles/<role> verifies that role only
        value = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]).name
    roles = {r.strip() for r in value.split(",") if r.strip()}
    return roles or None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    ours = [item for item in items if Path(str(item.fspath)).parent == here]
    roles = _selected_roles(config)
    if roles is not None:
        deselected = [
            item for item in ours if Path(str(item.fspath)).stem.removeprefix("test_") not in roles
        ]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if item not in deselected]
    # Without a target, testinfra would test the machine pytest runs on: never useful here.
    if config.getoption("hosts") or config.getoption("connection"):
        return
    skip = pytest.mark.skip(
        reason="tests/infra/host needs a target: --hosts=ssh://... or --connection=ansible"
    )
    for item in ours:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def file_overrides(pytestconfig: pytest.Config) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in pytestconfig.getoption("lectern_vars") or []:
        data = yaml.safe_load(Path(path).read_text()) or {}
        assert isinstance(data, dict), f"{path} must be a YAML mapping"
        merged.update(data)
    return merged


@pytest.fixture(scope="module")
def base(host: Any, file_overrides: dict[str, Any]) -> dict[str, Any]:
    """The variables of roles/base as the host was provisioned with them."""
    data: dict[str, Any] = {}
    get_variables = getattr(host.backend, "get_variables", None)
    if get_variables is not None:  # Ansible inventory (molecule, or lab via Ansible)
        data.update(get_variables())
    data.update(file_overrides)
    return role_vars("base", data)


@pytest.fixture(scope="session")
def render() -> Callable[[str, str, dict[str, Any]], str]:
    """Render roles/<role>/templates/<name> exactly as both engines must render it."""
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True
    )

    def _render(role: str, name: str, variables: dict[str, Any]) -> str:
        source = Path(template_path(role, name)).read_text()
        return env.from_string(source).render(**variables)

    return _render


@pytest.fixture(scope="module")
def lectern_state(pytestconfig: pytest.Config, base: dict[str, Any]) -> str:
    """present|absent: what the host was provisioned with."""
    explicit = pytestconfig.getoption("lectern_state")
    return str(explicit or base["lectern_base_state"])


@pytest.fixture(scope="module")
def library(host: Any, file_overrides: dict[str, Any]) -> dict[str, Any]:
    """The variables of roles/library_source as the host was provisioned with them."""
    data: dict[str, Any] = {}
    get_variables = getattr(host.backend, "get_variables", None)
    if get_variables is not None:
        data.update(get_variables())
    data.update(file_overrides)
    return role_vars("library_source", data)


@pytest.fixture(scope="module")
def library_state(pytestconfig: pytest.Config, library: dict[str, Any]) -> str:
    """present|absent for roles/library_source (--lectern-state wins)."""
    explicit = pytestconfig.getoption("lectern_state")
    return str(explicit or library["lectern_library_state"])


def _role_vars_of_host(host: Any, file_overrides: dict[str, Any], role: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    get_variables = getattr(host.backend, "get_variables", None)
    if get_variables is not None:
        data.update(get_variables())
    data.update(file_overrides)
    return role_vars(role, data)


@pytest.fixture(scope="module")
def proxy(host: Any, file_overrides: dict[str, Any]) -> dict[str, Any]:
    """The variables of roles/proxy as the host was provisioned with them."""
    return _role_vars_of_host(host, file_overrides, "proxy")


@pytest.fixture(scope="module")
def proxy_state(pytestconfig: pytest.Config, proxy: dict[str, Any]) -> str:
    """present|absent for roles/proxy (--lectern-state wins)."""
    return str(pytestconfig.getoption("lectern_state") or proxy["lectern_proxy_state"])


@pytest.fixture(scope="module")
def backup(host: Any, file_overrides: dict[str, Any]) -> dict[str, Any]:
    """The variables of roles/backup as the host was provisioned with them."""
    return _role_vars_of_host(host, file_overrides, "backup")


@pytest.fixture(scope="module")
def backup_state(pytestconfig: pytest.Config, backup: dict[str, Any]) -> str:
    """present|absent for roles/backup (--lectern-state wins)."""
    return str(pytestconfig.getoption("lectern_state") or backup["lectern_backup_state"])


@pytest.fixture(scope="module")
def updates(host: Any, file_overrides: dict[str, Any]) -> dict[str, Any]:
    """The variables of roles/updates as the host was provisioned with them, plus those of
    roles/appliance the role reads (release tool, stack directory, project)."""
    return {
        **_role_vars_of_host(host, file_overrides, "appliance"),
        **_role_vars_of_host(host, file_overrides, "updates"),
    }


@pytest.fixture(scope="module")
def updates_state(pytestconfig: pytest.Config, updates: dict[str, Any]) -> str:
    """present|absent for roles/updates (--lectern-state wins)."""
    return str(pytestconfig.getoption("lectern_state") or updates["lectern_updates_state"])
