"""Fixtures of the engine-agnostic host suite (tests/infra/host).

The suite asserts what roles/base (Ansible) and appliance/deploys/base.py (pyinfra) must
both leave on a host. It never assumes a connection type: it runs as molecule's
testinfra verifier (``--connection=ansible`` on molecule's inventory) and against lab
hosts (``--hosts=ssh://admin@IP --ssh-identity-file=KEY --sudo``).

Expected values come from roles/base/defaults/main.yml (via appliance.roles, the same
merge the pyinfra deploy uses), overridden by, in this order:
  * the host's inventory variables, when the connection is Ansible's;
  * a YAML file given with ``--lectern-vars FILE`` (or $LECTERN_BASE_VARS).
The expected state (present|absent) is ``--lectern-state`` (or $LECTERN_BASE_STATE),
default ``present``.
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
        default=os.environ.get("LECTERN_BASE_STATE", "present"),
        help="state the host was provisioned with (default: $LECTERN_BASE_STATE or present)",
    )
    group.addoption(
        "--lectern-vars",
        dest="lectern_vars",
        default=os.environ.get("LECTERN_BASE_VARS", ""),
        help="YAML file of variable overrides the host was provisioned with",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Without a target, testinfra would test the machine pytest runs on: never useful here.
    if config.getoption("hosts") or config.getoption("connection"):
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(
        reason="tests/infra/host needs a target: --hosts=ssh://... or --connection=ansible"
    )
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def lectern_state(pytestconfig: pytest.Config) -> str:
    return str(pytestconfig.getoption("lectern_state"))


@pytest.fixture(scope="session")
def file_overrides(pytestconfig: pytest.Config) -> dict[str, Any]:
    path = pytestconfig.getoption("lectern_vars")
    if not path:
        return {}
    data = yaml.safe_load(Path(path).read_text()) or {}
    assert isinstance(data, dict), f"{path} must be a YAML mapping"
    return data


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
