"""The updates concern, pyinfra side: the twin of roles/updates (read its README).

Reads roles/updates/defaults/main.yml (overridden by inventory data), renders
roles/updates/templates/ and the ONE Watchtower overlay template
watchtower/docker-compose.watchtower.yml.j2, so that a host provisioned by either engine
carries the same files byte for byte; tests/infra/host/test_updates.py verifies both.
Same order and semantics as roles/updates/tasks/*.yml. Of roles/appliance it reads
lectern_appliance_release_tool, _dir, _project, _compose_command and (watchtower mode)
_watchtower_enabled, exactly as the Ansible role sees them in a site run.

Run alone (development):   pyinfra -y @docker/CONTAINER appliance/deploys/updates.py
Run by the CLI:            appliance provision HOST  (appliance/deploys/site.py)
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from io import StringIO
from typing import Any

import jinja2
from pyinfra.api.deploy import deploy
from pyinfra.context import host
from pyinfra.facts.files import File
from pyinfra.facts.server import Command
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from appliance.deploys import ensure_dir, ensure_service, put, render, role_vars_checked
from appliance.roles import REPO_ROOT, RoleError, role_vars

ROLE = "updates"
UNITS_DIR = "/etc/systemd/system"
UNITS = ("lectern-update.service", "lectern-update.timer")
TIMER = "lectern-update.timer"
OVERLAY_TEMPLATE = REPO_ROOT / "watchtower" / "docker-compose.watchtower.yml.j2"
OVERLAY_NAME = "docker-compose.watchtower.yml"


def merged_vars(host_data: Mapping[str, Any]) -> dict[str, Any]:
    """The role's variables plus those of roles/appliance it reads (the templates see both)."""
    return {**role_vars("appliance", host_data), **role_vars_checked(ROLE, host_data)}


def overlay_path(v: Mapping[str, Any]) -> str:
    return f"{v['lectern_appliance_dir']}/{OVERLAY_NAME}"


def compose_project(v: Mapping[str, Any]) -> str:
    """Watchtower's own compose project: the stack's `up --remove-orphans` never removes it."""
    return f"{v['lectern_appliance_project']}-updates"


def container(v: Mapping[str, Any]) -> str:
    return f"{v['lectern_appliance_project']}-watchtower"


def compose_command(v: Mapping[str, Any]) -> str:
    return (
        f"{v['lectern_appliance_compose_command']} -p {shlex.quote(compose_project(v))}"
        f" -f {shlex.quote(overlay_path(v))}"
    )


def overlay_vars(v: Mapping[str, Any]) -> dict[str, Any]:
    """What the overlay is rendered with; roles/updates/tasks/watchtower.yml passes the same."""
    return {
        **v,
        "ansible_managed": v["lectern_managed"],
        "lectern_appliance_watchtower_image": v["lectern_updates_watchtower_image"],
        "lectern_appliance_watchtower_interval": v["lectern_updates_watchtower_interval"],
        "lectern_appliance_watchtower_monitor_only": v["lectern_updates_watchtower_monitor_only"],
        "lectern_appliance_watchtower_notification_url": v[
            "lectern_updates_watchtower_notification_url"
        ],
    }


def render_overlay(v: Mapping[str, Any]) -> str:
    """The overlay as both engines write it (Ansible's trim_blocks, trailing newline)."""
    if not OVERLAY_TEMPLATE.is_file():
        raise RoleError(f"{OVERLAY_TEMPLATE} does not exist")
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True
    )
    return env.from_string(OVERLAY_TEMPLATE.read_text()).render(**overlay_vars(v))


def _existing(paths: list[str]) -> list[str]:
    found = host.get_fact(
        Command,
        command="for p in "
        + " ".join(shlex.quote(p) for p in paths)
        + ' ; do if [ -e "$p" ] || [ -L "$p" ]; then echo "$p"; fi; done',
    )
    return (found or "").splitlines()


def _agent(v: dict[str, Any]) -> None:
    config_dir = v["lectern_updates_config_dir"]
    ensure_dir(
        name="Create the settings directory", path=config_dir, user="root", group="root", mode="700"
    )
    notify = f"{config_dir}/notify"
    if v["lectern_updates_notify"]:
        render(ROLE, "notify.j2", notify, v, "700")
    elif _existing([notify]):
        server.shell(name=f"Remove {notify}", commands=[f"rm -f {shlex.quote(notify)}"])
    units = [render(ROLE, f"{unit}.j2", f"{UNITS_DIR}/{unit}", v) for unit in UNITS]
    systemd.daemon_reload(name="Reload systemd (changed units)", _if=any_changed(*units))
    ensure_service(name=f"Start and enable {TIMER}", service=TIMER, running=True, enabled=True)


def _agent_absent(v: dict[str, Any]) -> None:
    if host.get_fact(File, path=f"{UNITS_DIR}/{TIMER}"):
        ensure_service(
            name=f"Stop and disable {TIMER}", service=TIMER, running=False, enabled=False
        )
    present = _existing(
        [f"{UNITS_DIR}/{unit}" for unit in UNITS] + [v["lectern_updates_config_dir"]]
    )
    removed = [
        server.shell(name=f"Remove {path}", commands=[f"rm -rf {shlex.quote(path)}"])
        for path in present
    ]
    if any(path.startswith(UNITS_DIR) for path in present):
        systemd.daemon_reload(name="Reload systemd (units removed)", _if=any_changed(*removed))


def _watchtower(v: dict[str, Any]) -> None:
    if not v["lectern_appliance_watchtower_enabled"]:
        raise RoleError(
            f"{host.name}: lectern_updates_mode is watchtower but "
            "lectern_appliance_watchtower_enabled is not true, so Watchtower would update "
            "nothing; set lectern_appliance_watchtower_enabled: true in your inventory (the "
            "app then follows lectern_appliance_image_tag, not a digest)"
        )
    ensure_dir(
        name="Create the stack directory",
        path=v["lectern_appliance_dir"],
        mode="755",
    )
    put(
        name=f"Render {overlay_path(v)} (watchtower/docker-compose.watchtower.yml.j2)",
        src=StringIO(render_overlay(v)),
        dest=overlay_path(v),
        mode="600",
    )
    fmt = shlex.quote(
        '{{index .Config.Labels "com.docker.compose.config-hash"}} {{.State.Running}}'
    )
    # Read before this run writes the overlay: a changed overlay reads as outdated too.
    state = host.get_fact(
        Command,
        command=f"want=$({compose_command(v)} config --hash watchtower 2>/dev/null"
        " | awk '{print $2}'); "
        f"have=$(docker inspect -f {fmt} {shlex.quote(container(v))} 2>/dev/null); "
        'if [ -n "$want" ] && [ "$have" = "$want true" ]; '
        "then echo current; else echo outdated; fi",
    )
    if state != "current":
        server.shell(name="Start Watchtower", commands=[f"{compose_command(v)} up -d"])


def _watchtower_absent(v: dict[str, Any]) -> None:
    name = container(v)
    network = f"{compose_project(v)}_default"
    leftovers = host.get_fact(
        Command,
        command="if command -v docker >/dev/null 2>&1; then "
        f"docker ps -aq --filter 'name=^/{name}$' | sed 's/^/container /'; "
        f"docker network ls -q --filter 'name=^{network}$' | sed 's/^/network /'; fi; "
        f"if [ -e {shlex.quote(overlay_path(v))} ]; then echo file; fi",
    )
    found = leftovers or ""
    if "container" in found:
        server.shell(
            name="Remove Watchtower's container", commands=[f"docker rm -f {shlex.quote(name)}"]
        )
    if "network" in found:
        server.shell(
            name="Remove Watchtower's network",
            commands=[f"docker network rm {shlex.quote(network)}"],
        )
    if "file" in found:
        files.file(name="Remove the Watchtower overlay", path=overlay_path(v), present=False)


@deploy("Lectern updates")
def apply() -> None:
    data = host.data.dict()  # type: ignore[no-untyped-call]  # untyped in pyinfra
    v = merged_vars(data)
    mode = v["lectern_updates_mode"] if v["lectern_updates_state"] == "present" else "none"
    # One mode at a time: the other modes' units and containers are removed.
    if mode == "agent":
        _agent(v)
    else:
        _agent_absent(v)
    if mode == "watchtower":
        _watchtower(v)
    else:
        _watchtower_absent(v)


# pyinfra executes deploy files (CLI argument, local.include) without a module name;
# importing this module (tests, other deploys) must not run it.
if __name__ != "appliance.deploys.updates":
    apply()
