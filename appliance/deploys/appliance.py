"""The appliance concern, pyinfra side: the twin of roles/appliance (read its README).

Reads roles/appliance/defaults/main.yml (overridden by inventory data), renders the ONE
stack template compose/docker-compose.yml.j2 and roles/appliance/templates/env.j2, and
installs the release tool rollback/lectern_release.py, so that a host provisioned by
either engine carries the same files byte for byte; tests/infra/host/test_appliance.py
verifies both. Keep the steps in the order and with the semantics of
roles/appliance/tasks/*.yml.

Run alone (development):   pyinfra -y @docker/CONTAINER appliance/deploys/appliance.py
Run by the CLI:            appliance provision HOST  (appliance/deploys/site.py)
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from pathlib import Path
from typing import Any

import jinja2
from pyinfra.api.deploy import deploy
from pyinfra.context import host, state
from pyinfra.facts.files import File
from pyinfra.facts.server import Command
from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

from appliance.deploys import ensure_dir, ensure_service, put, render, role_vars_checked
from appliance.roles import REPO_ROOT, RoleError, template_path

ROLE = "appliance"
# Repository files outside roles/appliance the concern uses (one copy each).
COMPOSE_TEMPLATE = REPO_ROOT / "compose" / "docker-compose.yml.j2"
RELEASE_TOOL = REPO_ROOT / "rollback" / "lectern_release.py"


def repo_path(relative: str) -> Path:
    """A file of the repository (the compose template, the release tool), checked to exist."""
    path = REPO_ROOT / relative
    if not path.is_file():
        raise RoleError(f"{relative} does not exist in {REPO_ROOT}")
    return path


def compose_vars(v: dict[str, Any]) -> dict[str, Any]:
    """The variables compose/docker-compose.yml.j2 is rendered with (both engines).

    Secrets never enter the compose file: it refers to them as ``${NAME}`` and
    docker-compose substitutes them from .env. roles/appliance/tasks/present.yml
    computes the same (its "Decide the values the compose file is rendered with").
    """
    env = dict(v["lectern_appliance_env"])
    env.update({name: f"${{{name}}}" for name in v["lectern_appliance_secrets"]})
    return {
        **v,
        "lectern_appliance_env": env,
        "lectern_appliance_postgres_password": "${LECTERN_POSTGRES_PASSWORD}",
    }


def render_compose(v: dict[str, Any]) -> str:
    """The compose file as both engines write it (Ansible's trim_blocks, trailing newline)."""
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True
    )
    source = repo_path("compose/docker-compose.yml.j2").read_text()
    return env.from_string(source).render(**compose_vars(v))


def release_ref(v: dict[str, Any]) -> str:
    """What lectern-release deploys: the digest when pinned (and Watchtower off), else the tag."""
    if v["lectern_appliance_image_digest"] and not v["lectern_appliance_watchtower_enabled"]:
        return str(v["lectern_appliance_image_digest"])
    return str(v["lectern_appliance_image_tag"])


def compose_command(v: dict[str, Any]) -> str:
    directory = shlex.quote(v["lectern_appliance_dir"])
    project = shlex.quote(v["lectern_appliance_project"])
    return f"{v['lectern_appliance_compose_command']} --project-directory {directory} -p {project}"


@contextmanager
def _no_diff() -> Iterator[None]:
    """Keep file contents (secrets) out of pyinfra's --diff output."""
    saved = state.config.DIFF
    state.config.DIFF = False
    try:
        yield
    finally:
        state.config.DIFF = saved


def _present(v: dict[str, Any]) -> None:
    if not v["lectern_appliance_image"]:
        raise RoleError(
            f"{host.name}: lectern_appliance_image is empty; set it in your inventory"
            " (e.g. 172.30.57.10:5000/lectern/app) with lectern_appliance_image_digest"
        )
    if v["lectern_appliance_postgres_enabled"] and not v["lectern_appliance_postgres_password"]:
        raise RoleError(
            f"{host.name}: lectern_appliance_postgres_enabled is true but"
            " lectern_appliance_postgres_password is empty; set it in your vault"
            " (or the environment for pyinfra)"
        )
    d = v["lectern_appliance_dir"]
    ensure_dir(name="Create the stack directory", path=d, user="root", group="root", mode="755")
    data_dir = v["lectern_appliance_data_dir"]
    owner = f"{v['lectern_appliance_uid']}:{v['lectern_appliance_gid']}"
    # numeric ids (pyinfra's Directory fact compares names, which a uid may not have)
    current = host.get_fact(
        Command, command=f"stat -c '%F %u:%g %a' {shlex.quote(data_dir)} 2>/dev/null || true"
    )
    if current != f"directory {owner} 700":
        files.directory(  # checked above by uid/gid; ensure_dir compares names
            name="Create the data directory (owned by the app's uid/gid)",
            path=data_dir,
            user=str(v["lectern_appliance_uid"]),
            group=str(v["lectern_appliance_gid"]),
            mode="700",
        )
    library = v["lectern_appliance_library_path"]
    quoted = shlex.quote(library)
    exists = host.get_fact(Command, command=f"test -e {quoted} -o -L {quoted} && echo yes || true")
    # With a library mount, the library_source role owns the path (a symlink it switches,
    # created later in this same run): never create it here.
    if exists != "yes" and not v["lectern_appliance_library_mount"]:
        # Decided again when it runs: library_source (earlier in this run) may create
        # the path as its stable symlink after this plan was made.
        server.shell(
            name="Create the library path (missing)",
            commands=[
                f"test -e {quoted} -o -L {quoted} || install -d -m 755 -o root -g root {quoted}"
            ],
        )

    with _no_diff():
        env_file = files.template(
            name=f"Write {d}/.env (secrets)",
            src=template_path(ROLE, "env.j2"),
            dest=f"{d}/.env",
            mode="600",
            jinja_env_kwargs={"trim_blocks": True},
            **v,
        )
    compose = put(
        name=f"Render {d}/docker-compose.yml (compose/docker-compose.yml.j2)",
        src=StringIO(render_compose(v)),
        dest=f"{d}/docker-compose.yml",
        mode="644",
    )
    put(
        name="Install the on-host release tool",
        src=str(repo_path("rollback/lectern_release.py")),
        dest=v["lectern_appliance_release_tool"],
        mode="755",
    )

    _release(v, watched=[compose, env_file])


def _release(v: dict[str, Any], watched: list[Any]) -> None:
    """The release tool's configuration and unit, then the same gated deploy as a rollout."""
    tool = v["lectern_appliance_release_tool"]
    config = v["lectern_appliance_release_config"]
    ensure_dir(
        name="Create the configuration directory",
        path=str(Path(config).parent),
        mode="755",
    )
    release_json = render(ROLE, "release.json.j2", config, v, mode="644")
    unit = render(
        ROLE,
        "lectern-release-converge.service.j2",
        "/etc/systemd/system/lectern-release-converge.service",
        v,
        mode="644",
    )
    ensure_service(
        name="Enable the converge-at-boot unit",
        service="lectern-release-converge.service",
        running=None,  # a oneshot run at boot, not now
        enabled=True,
        daemon_reload=unit.will_change,
    )
    container = shlex.quote(f"{v['lectern_appliance_project']}-app")
    if host.get_fact(
        Command, command=f"docker inspect {container} >/dev/null 2>&1 && echo yes || true"
    ):
        server.shell(
            name="Remove an unslotted app container of an earlier version",
            commands=[f"docker rm -f {container}"],
        )
    shared = [
        name
        for name, on in (
            ("redis", v["lectern_appliance_redis_enabled"]),
            ("postgres", v["lectern_appliance_postgres_enabled"]),
        )
        if on
    ]
    if shared:
        missing = host.get_fact(
            Command,
            command=" ; ".join(
                f"docker inspect -f '{{{{.State.Running}}}}' {v['lectern_appliance_project']}-{n}"
                f" 2>/dev/null | grep -qx true || echo {n}"
                for n in shared
            ),
        )
        server.shell(
            name="Start the shared services (redis, postgres) the release slots use",
            commands=[
                f"cd {shlex.quote(v['lectern_appliance_dir'])}",
                f"{compose_command(v)} up -d --no-recreate {' '.join(shared)}",
            ],
            _if=None if missing else any_changed(*watched),
        )
    ref = shlex.quote(release_ref(v))
    deploy_cmd = f"LECTERN_RELEASE_CONFIG={shlex.quote(config)} {shlex.quote(tool)} deploy {ref}"
    plan = host.get_fact(
        Command,
        command=f"test -x {shlex.quote(tool)} || {{ echo install; exit 0; }}; "
        f"LECTERN_RELEASE_CONFIG={shlex.quote(config)} {shlex.quote(tool)} deploy --dry-run {ref}"
        " 2>/dev/null || echo failed",
    )
    # The plan is read before this run writes files: a changed compose file, .env or
    # release configuration also redeploys (gated; the tool says `unchanged` otherwise).
    server.shell(
        name="Deploy the release through the release tool (gated on health)",
        commands=[deploy_cmd],
        _if=None
        if not str(plan or "").startswith("unchanged")
        else any_changed(release_json, *watched),
    )


def _absent(v: dict[str, Any]) -> None:
    project = shlex.quote(v["lectern_appliance_project"])
    ids = host.get_fact(
        Command,
        command="systemctl is-active --quiet docker || exit 0; "
        f"docker ps -aq --filter label=org.lectern.app={project}",
    )
    if ids:
        server.shell(
            name="Stop and remove Lectern's containers",
            commands=["docker rm -f " + " ".join(shlex.quote(i) for i in ids.split())],
        )
    network = host.get_fact(
        Command,
        command="systemctl is-active --quiet docker || exit 0; "
        f"docker network inspect {project} >/dev/null 2>&1 && echo yes || true",
    )
    if network:
        server.shell(name="Remove the stack's network", commands=[f"docker network rm {project}"])
    unit = "/etc/systemd/system/lectern-release-converge.service"
    if host.get_fact(File, path=unit):
        ensure_service(
            name="Disable the converge-at-boot unit",
            service="lectern-release-converge.service",
            running=None,
            enabled=False,
        )
    files.directory(
        name="Remove the stack directory", path=v["lectern_appliance_dir"], present=False
    )
    for path in (v["lectern_appliance_release_tool"], v["lectern_appliance_release_config"], unit):
        files.file(name=f"Remove {path}", path=path, present=False)
    if v["lectern_appliance_purge_data"]:
        for path in (
            v["lectern_appliance_data_dir"],
            v["lectern_appliance_postgres_data_dir"],
            v["lectern_appliance_release_state_dir"],
        ):
            files.directory(name=f"Delete the app's data {path}", path=path, present=False)


@deploy("Lectern appliance")
def apply() -> None:
    data = host.data.dict()  # type: ignore[no-untyped-call]  # untyped in pyinfra
    v = role_vars_checked(ROLE, data)
    if v["lectern_appliance_state"] == "present":
        _present(v)
    else:
        _absent(v)


# pyinfra executes deploy files (CLI argument, local.include) without a module name;
# importing this module (tests, other deploys) must not run it.
if __name__ != "appliance.deploys.appliance":
    apply()
