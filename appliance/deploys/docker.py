"""The docker concern, pyinfra side: the twin of roles/docker (read its README).

Reads roles/docker/defaults/main.yml (overridden by inventory data) and renders
roles/docker/templates/, so that a host provisioned by either engine carries the same
files byte for byte; tests/infra/host/test_docker.py verifies both. Keep the steps in
the order and with the semantics of roles/docker/tasks/*.yml.

Run alone (development):   pyinfra -y @docker/CONTAINER appliance/deploys/docker.py
Run by the CLI:            appliance provision HOST  (appliance/deploys/site.py)
"""

from __future__ import annotations

import shlex
from io import StringIO
from typing import Any

from pyinfra.api.deploy import deploy
from pyinfra.context import host
from pyinfra.facts.files import Directory, File, FileContents
from pyinfra.facts.server import Command
from pyinfra.operations import apt, files, server, systemd

from appliance.deploys import (
    ensure_dir,
    ensure_service,
    install_packages,
    installed_packages,
    render,
    role_vars_checked,
)

ROLE = "docker"
DAEMON_JSON = "/etc/docker/daemon.json"
REPO_KEY = "/etc/apt/keyrings/docker.asc"
REPO_SOURCES = "/etc/apt/sources.list.d/docker.sources"
ENGINE_UNITS = ("docker.socket", "docker.service", "containerd.service")
CMDLINE_TXT = ("/boot/firmware/cmdline.txt", "/boot/cmdline.txt")


def host_arch() -> tuple[str, str]:
    """(Debian architecture, release codename) of the host, as roles/docker reads them."""
    out = host.get_fact(
        Command,
        command='dpkg --print-architecture && . /etc/os-release && echo "$VERSION_CODENAME"',
    )
    arch, _, codename = (out or "").partition("\n")
    return arch.strip(), codename.strip()


def platform(v: dict[str, Any], arch: str) -> str:
    """The OCI image platform of a Debian architecture (lectern_docker_platforms)."""
    return str(v["lectern_docker_platforms"].get(arch, f"linux/{arch}"))


def _is_pi(v: dict[str, Any]) -> bool:
    path = shlex.quote(v["lectern_docker_pi_model_path"])
    model = host.get_fact(Command, command=f"tr -d '\\000' < {path} 2>/dev/null || true")
    return "Raspberry Pi" in (model or "")


def _units() -> list[str]:
    out = host.get_fact(
        Command,
        command="systemctl list-unit-files --no-legend " + " ".join(ENGINE_UNITS) + " || true",
    )
    return [line.split()[0] for line in (out or "").splitlines() if line.strip()]


def _docker_members() -> list[str]:
    out = host.get_fact(Command, command="getent group docker || true") or ""
    members = out.strip().split(":")[3] if out.count(":") >= 3 else ""
    return [m for m in members.split(",") if m]


def _pi(v: dict[str, Any], present: bool) -> None:
    path = next((p for p in CMDLINE_TXT if host.get_fact(File, path=p)), None)
    if not path:
        return
    old = " ".join(host.get_fact(FileContents, path=path) or []).split()
    wanted = list(v["lectern_docker_pi_cmdline"])
    if present:
        new = old + [t for t in wanted if t not in old]
    else:
        new = [t for t in old if t not in wanted]
    if new != old:
        files.put(
            name=f"Write the kernel command line {path} (memory cgroup for container limits)",
            src=StringIO(" ".join(new) + "\n"),
            dest=path,
        )


def _present(v: dict[str, Any]) -> None:
    arch, codename = host_arch()
    distribution = v["lectern_docker_source"] == "distribution"
    engine = v[
        "lectern_docker_distribution_packages" if distribution else "lectern_docker_repo_packages"
    ]
    packages = list(engine) + list(v["lectern_docker_compose_packages"])

    repo = None
    if not distribution:
        ensure_dir(
            name="Create the apt keyrings directory",
            path="/etc/apt/keyrings",
            user="root",
            group="root",
            mode="755",
        )
        files.download(
            name="Fetch Docker's signing key",
            src=f"{v['lectern_docker_repo_url']}/gpg",
            dest=REPO_KEY,
            user="root",
            group="root",
            mode="644",
        )
        repo = render(
            ROLE, "docker.sources.j2", REPO_SOURCES, v, docker__arch=arch, docker__codename=codename
        )

    # a missing package refreshes the index in install_packages; a new repository here
    if repo is not None and all(p in installed_packages() for p in packages):
        apt.update(name="Refresh the apt package index (new repository)", _if=repo.did_change)

    ensure_dir(name="Create /etc/docker", path="/etc/docker", user="root", group="root", mode="755")
    daemon = render(ROLE, "daemon.json.j2", DAEMON_JSON, v)
    install_packages(
        name="Install the engine and docker-compose", packages=packages, no_recommends=True
    )
    ensure_service(name="Enable and start the engine", service="docker", running=True, enabled=True)

    members = _docker_members()
    for user in v["lectern_docker_group_members"]:
        if user not in members:
            server.shell(
                name=f"Add {user} to the docker group (root-equivalent)",
                commands=[f"gpasswd -a {shlex.quote(user)} docker"],
            )

    ensure_dir(
        name="Create the Lectern configuration directory",
        path=v["lectern_docker_config_dir"],
        user="root",
        group="root",
        mode="755",
    )
    render(
        ROLE,
        "docker-arch.j2",
        f"{v['lectern_docker_config_dir']}/docker-arch",
        v,
        docker__arch=arch,
    )

    if _is_pi(v):
        _pi(v, present=True)

    systemd.service(
        name="Restart the engine (configuration changed)",
        service="docker",
        restarted=True,
        _if=daemon.did_change,
    )


def _empty_besides(path: str, ignore: str) -> bool:
    """True when ``path`` is a directory holding nothing but ``ignore`` (errs on keeping)."""
    if not host.get_fact(Directory, path=path):
        return False
    probe = (
        f"find {shlex.quote(path)} -mindepth 1 -maxdepth 1 ! -name {shlex.quote(ignore)}"
        " -printf x -quit 2>/dev/null && echo . || echo unreadable"
    )
    return host.get_fact(Command, command=probe) == "."


def _absent(v: dict[str, Any]) -> None:
    units = _units()
    if "docker.service" in units:
        running = host.get_fact(
            Command, command="systemctl is-active --quiet docker && docker ps -q || true"
        )
        if running:
            # live-restore would keep them running without an engine
            server.shell(
                name="Stop running containers",
                commands=['ids=$(docker ps -q); [ -z "$ids" ] || docker stop $ids >/dev/null'],
            )
    for unit in ENGINE_UNITS:
        if unit in units:
            ensure_service(
                name=f"Stop and disable {unit}", service=unit, running=False, enabled=False
            )
    files.file(name="Remove the engine configuration", path=DAEMON_JSON, present=False)

    members = _docker_members()
    for user in v["lectern_docker_group_members"]:
        if user in members:
            server.shell(
                name=f"Remove {user} from the docker group",
                commands=[f"gpasswd -d {shlex.quote(user)} docker"],
            )

    config_dir = v["lectern_docker_config_dir"]
    config_dir_unused = _empty_besides(config_dir, "docker-arch")
    files.file(
        name="Remove the architecture record", path=f"{config_dir}/docker-arch", present=False
    )
    if config_dir_unused:
        server.shell(
            name="Remove the Lectern configuration directory (nothing else in it)",
            commands=[f"rmdir {shlex.quote(config_dir)}"],
        )

    if _is_pi(v):
        _pi(v, present=False)

    if v["lectern_docker_purge"]:
        installed = installed_packages()
        every = (
            list(v["lectern_docker_distribution_packages"])
            + list(v["lectern_docker_repo_packages"])
            + list(v["lectern_docker_compose_packages"])
        )
        purge = [p for p in every if p in installed]
        if purge:
            apt.packages(
                name="Purge the engine packages", packages=purge, present=False, purge=True
            )
        left = host.get_fact(
            Command,
            command="for d in /var/lib/docker /var/lib/containerd; do"
            ' [ -d "$d" ] && [ -n "$(ls -A "$d")" ] && echo "$d"; done; true',
        )
        for path in (left or "").split():
            # the contents, not the directory: often a mount point
            server.shell(
                name=f"Delete everything in {path} (images, containers, volumes)",
                commands=[f"find {shlex.quote(path)} -mindepth 1 -maxdepth 1 -exec rm -rf {{}} +"],
            )
        files.directory(name="Remove /etc/docker", path="/etc/docker", present=False)
        files.file(name="Remove Docker's repository", path=REPO_SOURCES, present=False)
        files.file(name="Remove Docker's signing key", path=REPO_KEY, present=False)


@deploy("Lectern docker")
def apply() -> None:
    data = host.data.dict()  # type: ignore[no-untyped-call]  # untyped in pyinfra
    v = role_vars_checked(ROLE, data)
    if v["lectern_docker_state"] == "present":
        _present(v)
    else:
        _absent(v)


# pyinfra executes deploy files (CLI argument, local.include) without a module name;
# importing this module (tests, other deploys) must not run it.
if __name__ != "appliance.deploys.docker":
    apply()
