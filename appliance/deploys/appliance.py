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

from appliance.deploys import role_vars_checked
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
        "ansible_managed": v["lectern_managed"],
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


def image_ref(v: dict[str, Any]) -> str:
    """image@digest when a digest is given (and Watchtower is off), else image:tag."""
    image = v["lectern_appliance_image"]
    if v["lectern_appliance_image_digest"] and not v["lectern_appliance_watchtower_enabled"]:
        return f"{image}@{v['lectern_appliance_image_digest']}"
    return f"{image}:{v['lectern_appliance_image_tag']}"


def compose_command(v: dict[str, Any]) -> str:
    directory = shlex.quote(v["lectern_appliance_dir"])
    project = shlex.quote(v["lectern_appliance_project"])
    return f"{v['lectern_appliance_compose_command']} --project-directory {directory} -p {project}"


def health_url(v: dict[str, Any]) -> str:
    bind = v["lectern_appliance_bind_address"]
    address = "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind
    return f"http://{address}:{v['lectern_appliance_port']}{v['lectern_appliance_health_path']}"


@contextmanager
def _no_diff() -> Iterator[None]:
    """Keep file contents (secrets) out of pyinfra's --diff output."""
    saved = state.config.DIFF
    state.config.DIFF = False
    try:
        yield
    finally:
        state.config.DIFF = saved


def _probe(v: dict[str, Any]) -> str:
    """'current' when the app container runs the configuration the compose file describes."""
    d = shlex.quote(v["lectern_appliance_dir"])
    container = shlex.quote(f"{v['lectern_appliance_project']}-app")
    fmt = shlex.quote(
        '{{index .Config.Labels "com.docker.compose.config-hash"}} {{.State.Running}}'
    )
    command = (
        f"cd {d} 2>/dev/null || exit 0; "
        f"want=$({compose_command(v)} config --hash app 2>/dev/null | awk '{{print $2}}'); "
        f"have=$(docker inspect -f {fmt} {container} 2>/dev/null); "
        'if [ -n "$want" ] && [ "$have" = "$want true" ]; then echo current; else echo outdated; fi'
    )
    return str(host.get_fact(Command, command=command) or "")


def _wait_healthy(v: dict[str, Any], **kwargs: Any) -> None:
    url = shlex.quote(health_url(v))
    timeout = int(v["lectern_appliance_health_timeout"])
    container = shlex.quote(f"{v['lectern_appliance_project']}-app")
    lines = int(v["lectern_appliance_health_log_lines"])
    message = shlex.quote(
        f"Lectern did not answer 200 on {v['lectern_appliance_health_path']}"
        f" (port {v['lectern_appliance_port']}) within {timeout}s. Last lines of"
        f" {v['lectern_appliance_project']}-app's log:"
    )
    server.shell(
        name="Wait until the app is healthy",
        commands=[
            f"deadline=$(( $(date +%s) + {timeout} )); "
            f"until curl -fsS -o /dev/null --max-time 5 {url}; do "
            'if [ "$(date +%s)" -ge "$deadline" ]; then '
            f'echo "$(hostname): "{message} >&2; docker logs --tail {lines} {container} >&2 2>&1; '
            "exit 1; fi; sleep 3; done"
        ],
        **kwargs,
    )


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
    files.directory(
        name="Create the stack directory", path=d, user="root", group="root", mode="755"
    )
    data_dir = v["lectern_appliance_data_dir"]
    owner = f"{v['lectern_appliance_uid']}:{v['lectern_appliance_gid']}"
    # numeric ids (pyinfra's Directory fact compares names, which a uid may not have)
    current = host.get_fact(
        Command, command=f"stat -c '%F %u:%g %a' {shlex.quote(data_dir)} 2>/dev/null || true"
    )
    if current != f"directory {owner} 750":
        files.directory(
            name="Create the data directory (owned by the app's uid/gid)",
            path=data_dir,
            user=str(v["lectern_appliance_uid"]),
            group=str(v["lectern_appliance_gid"]),
            mode="750",
        )
    library = v["lectern_appliance_library_path"]
    quoted = shlex.quote(library)
    exists = host.get_fact(Command, command=f"test -e {quoted} -o -L {quoted} && echo yes || true")
    # With a library mount, the library_source role owns the path (a symlink it switches,
    # created later in this same run): never create it here.
    if exists != "yes" and not v["lectern_appliance_library_mount"]:
        files.directory(
            name="Create the library path (missing)",
            path=library,
            user="root",
            group="root",
            mode="755",
        )

    with _no_diff():
        env_file = files.template(
            name=f"Write {d}/.env (secrets)",
            src=template_path(ROLE, "env.j2"),
            dest=f"{d}/.env",
            user="root",
            group="root",
            mode="600",
            jinja_env_kwargs={"trim_blocks": True},
            **v,
        )
    compose = files.put(
        name=f"Render {d}/docker-compose.yml (compose/docker-compose.yml.j2)",
        src=StringIO(render_compose(v)),
        dest=f"{d}/docker-compose.yml",
        user="root",
        group="root",
        mode="644",
    )
    files.put(
        name="Install the on-host release tool",
        src=str(repo_path("rollback/lectern_release.py")),
        dest=v["lectern_appliance_release_tool"],
        user="root",
        group="root",
        mode="755",
    )

    ref = shlex.quote(image_ref(v))
    dc = compose_command(v)
    up_commands = [
        f"cd {shlex.quote(d)}",
        f"docker image inspect {ref} >/dev/null 2>&1 || {dc} pull --quiet",
        f"{dc} up -d --remove-orphans",
    ]
    if _probe(v) != "current":
        server.shell(name="Pull the image and start the stack", commands=up_commands)
        _wait_healthy(v)
        return
    # Running as described; the files may still change in this run.
    server.shell(
        name="Pull the image and start the stack (configuration changed)",
        commands=up_commands,
        _if=any_changed(compose, env_file),
    )
    url = shlex.quote(health_url(v))
    healthy = host.get_fact(
        Command, command=f"curl -fsS -o /dev/null --max-time 5 {url} && echo ok || true"
    )
    if healthy != "ok":
        _wait_healthy(v)
    else:
        _wait_healthy(v, _if=any_changed(compose, env_file))


def _absent(v: dict[str, Any]) -> None:
    project = shlex.quote(v["lectern_appliance_project"])
    ids = host.get_fact(
        Command,
        command="systemctl is-active --quiet docker || exit 0; "
        f"docker ps -aq --filter label=com.docker.compose.project={project}",
    )
    d = v["lectern_appliance_dir"]
    if ids:
        if host.get_fact(File, path=f"{d}/docker-compose.yml"):
            commands = [f"cd {shlex.quote(d)}", f"{compose_command(v)} down --remove-orphans"]
        else:
            commands = ["docker rm -f " + " ".join(shlex.quote(i) for i in ids.split())]
        server.shell(name="Stop and remove the stack", commands=commands)
    files.directory(name="Remove the stack directory", path=d, present=False)
    files.file(
        name="Remove the release tool", path=v["lectern_appliance_release_tool"], present=False
    )
    if v["lectern_appliance_purge_data"]:
        for path in (v["lectern_appliance_data_dir"], v["lectern_appliance_postgres_data_dir"]):
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
