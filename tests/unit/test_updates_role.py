"""roles/updates: defaults, argument spec and the pyinfra twin's rendering agree.

The host-side proof is molecule (roles/updates/molecule/*) with the shared testinfra suite;
these are the cheap checks that need no host.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from appliance.deploys import argument_spec, validate
from appliance.deploys.updates import (
    compose_command,
    container,
    overlay_path,
    overlay_vars,
    render_overlay,
)
from appliance.roles import RoleError, role_defaults, role_vars, template_path


def merged(**data: Any) -> dict[str, Any]:
    return {**role_vars("appliance", data), **role_vars("updates", data)}


def test_every_default_has_a_spec_with_the_same_default() -> None:
    defaults = role_defaults("updates")
    spec = argument_spec("updates")
    assert set(defaults) == set(spec)
    for name, value in defaults.items():
        assert spec[name]["default"] == value, name
    validate("updates", defaults)


@pytest.mark.parametrize(
    ("name", "value"),
    [("lectern_updates_mode", "unattended"), ("lectern_updates_state", "off")],
)
def test_bad_choices_are_refused(name: str, value: str) -> None:
    with pytest.raises(RoleError, match=f"{name} must be one of"):
        validate("updates", {**role_defaults("updates"), name: value})


def test_default_mode_is_controlled() -> None:
    assert role_defaults("updates")["lectern_updates_mode"] == "controlled"


def _unit(v: dict[str, Any]) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True)
    source = Path(template_path("updates", "lectern-update.service.j2")).read_text()
    return env.from_string(source).render(**v)


def test_service_command_line_with_and_without_notify() -> None:
    plain = _unit(merged(lectern_updates_channel="edge"))
    assert "\nExecStart=/usr/local/bin/lectern-release agent --channel edge\n" in plain
    notified = _unit(merged(lectern_updates_channel="1.4", lectern_updates_notify="curl x"))
    assert (
        "\nExecStart=/usr/local/bin/lectern-release agent --channel 1.4"
        " --notify /etc/lectern/updates/notify\n" in notified
    )
    # the command itself (it may hold a token) never reaches the 0644 unit
    assert "curl" not in notified
    assert "\nType=oneshot\n" in notified and "\nTimeoutStartSec=30min\n" in notified


def test_overlay_gets_the_roles_variables() -> None:
    v = merged(
        lectern_updates_watchtower_image="registry.lan/watchtower:1.9",
        lectern_updates_watchtower_interval=600,
        lectern_updates_watchtower_monitor_only=True,
        lectern_appliance_project="books",
    )
    overlay = yaml.safe_load(render_overlay(v))
    wt = overlay["services"]["watchtower"]
    assert wt["image"] == "registry.lan/watchtower:1.9"
    assert wt["container_name"] == container(v) == "books-watchtower"
    assert "--monitor-only" in wt["command"] and "--cleanup" not in wt["command"]
    assert "--scope=books" in wt["command"] and "--interval=600" in wt["command"]
    assert overlay_vars(v)["ansible_managed"] == v["lectern_managed"]
    assert overlay_path(v) == "/opt/lectern/docker-compose.watchtower.yml"
    assert compose_command(v) == (
        "docker-compose -p books-updates -f /opt/lectern/docker-compose.watchtower.yml"
    )


def test_overlay_updates_by_default() -> None:
    wt = yaml.safe_load(render_overlay(merged()))["services"]["watchtower"]
    assert wt["image"] == "nickfedor/watchtower:latest"
    assert "--cleanup" in wt["command"] and "--monitor-only" not in wt["command"]


def test_fallbacks_for_appliance_variables_equal_its_defaults() -> None:
    """The role's `lectern_appliance_X | default(...)` (used when it runs without the
    appliance role, as in its molecule) must not drift from roles/appliance/defaults."""
    appliance = role_defaults("appliance")
    role = Path(template_path("updates", "notify.j2")).parents[1]
    pattern = re.compile(r"(lectern_appliance_\w+) \| default\('([^']*)'\)")
    found = [
        m.groups()
        for path in [*role.glob("tasks/*.yml"), *role.glob("templates/*.j2")]
        for m in pattern.finditer(path.read_text())
    ]
    assert found
    for name, fallback in found:
        assert str(appliance[name]) == fallback, name
