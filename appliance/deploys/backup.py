"""The backup concern, pyinfra side: the twin of roles/backup (read its README).

Reads roles/backup/defaults/main.yml (overridden by inventory data) and renders
roles/backup/templates/ and installs roles/backup/files/lectern-backup, so a host
provisioned by either engine carries the same files byte for byte;
tests/infra/host/test_backup.py verifies both. Same order and semantics as
roles/backup/tasks/*.yml. Secret: lectern_backup_password, else
$LECTERN_BACKUP_PASSWORD, else a password generated once on the host; never printed.

Run alone (development):   pyinfra -y @docker/CONTAINER appliance/deploys/backup.py
Run by the CLI:            appliance provision HOST  (appliance/deploys/site.py)
"""

from __future__ import annotations

import os
import posixpath
import shlex
from typing import Any

from pyinfra.api.deploy import deploy
from pyinfra.context import host
from pyinfra.facts.files import File
from pyinfra.facts.server import Command
from pyinfra.operations import server, systemd
from pyinfra.operations.util import any_changed

from appliance.deploys import (
    ensure_dir,
    ensure_service,
    install_packages,
    put,
    render,
    role_vars_checked,
)
from appliance.roles import role_dir

ROLE = "backup"
TOOL = "/usr/local/sbin/lectern-backup"
UNITS_DIR = "/etc/systemd/system"
UNITS = (
    "lectern-backup.service",
    "lectern-backup.timer",
    "lectern-backup-check.service",
    "lectern-backup-check.timer",
    "lectern-backup-drill.service",
    "lectern-backup-drill.timer",
)
TIMERS = tuple(unit for unit in UNITS if unit.endswith(".timer"))


def packages(v: dict[str, Any]) -> list[str]:
    """restic and friends, plus what the repository type needs (as tasks/present.yml)."""
    repository = str(v["lectern_backup_repository"])
    wanted = list(v["lectern_backup_packages"])
    if repository.startswith("rclone:"):
        wanted.append("rclone")
    if repository.startswith("sftp:"):
        wanted.append("openssh-client")
    return wanted


def _present(v: dict[str, Any]) -> None:
    wanted = packages(v)
    install_packages(name="Install the backup packages", packages=wanted)

    config_dir = v["lectern_backup_config_dir"]
    ensure_dir(
        name="Create the settings directory", path=config_dir, user="root", group="root", mode="700"
    )
    for path in (v["lectern_backup_state_dir"], v["lectern_backup_cache_dir"]):
        ensure_dir(name=f"Create {path}", path=path, user="root", group="root", mode="700")

    password_file = v["lectern_backup_password_file"]
    password = v["lectern_backup_password"] or os.environ.get("LECTERN_BACKUP_PASSWORD", "")
    if password:
        render(
            ROLE,
            "restic-password.j2",
            password_file,
            {**v, "lectern_backup_password": password},
            "600",
        )
    elif not host.get_fact(File, path=password_file):
        # Generated once; never replaced (it opens every snapshot already taken).
        server.shell(
            name="Generate a repository password",
            commands=[
                f"umask 077; head -c 32 /dev/urandom | base64 > {shlex.quote(password_file)}"
            ],
        )
    render(ROLE, "env.j2", f"{config_dir}/env", v, "600")
    render(ROLE, "backup.conf.j2", f"{config_dir}/backup.conf", v)
    put(
        name="Install the lectern-backup tool",
        src=str(role_dir(ROLE) / "files" / "lectern-backup"),
        dest=TOOL,
        mode="755",
    )
    repository = str(v["lectern_backup_repository"])
    if repository.startswith("/"):
        ensure_dir(
            name="Create a local repository's parent directory",
            path=posixpath.dirname(repository),
            mode="700",
        )
    initialized = host.get_fact(Command, command=f"{TOOL} initialized 2>/dev/null || echo no")
    if initialized != "yes":
        server.shell(name="Initialise the repository", commands=[f"{TOOL} init"])

    units = [render(ROLE, f"{unit}.j2", f"{UNITS_DIR}/{unit}", v) for unit in UNITS]
    systemd.daemon_reload(name="Reload systemd (changed units)", _if=any_changed(*units))
    for timer in TIMERS:
        ensure_service(name=f"Start and enable {timer}", service=timer, running=True, enabled=True)


def _absent(v: dict[str, Any]) -> None:
    # OFF path: the repository and the password file stay unless lectern_backup_purge.
    for timer in TIMERS:
        if host.get_fact(File, path=f"{UNITS_DIR}/{timer}"):
            ensure_service(
                name=f"Stop and disable {timer}", service=timer, running=False, enabled=False
            )
    config_dir = v["lectern_backup_config_dir"]
    leftovers = [f"{UNITS_DIR}/{unit}" for unit in UNITS] + [
        TOOL,
        f"{config_dir}/backup.conf",
        v["lectern_backup_staging_dir"],
        v["lectern_backup_scratch_dir"],
    ]
    if v["lectern_backup_purge"]:
        leftovers += [
            v["lectern_backup_password_file"],
            f"{config_dir}/env",
            config_dir,
            v["lectern_backup_state_dir"],
            v["lectern_backup_cache_dir"],
        ]
        if str(v["lectern_backup_repository"]).startswith("/"):
            leftovers.append(v["lectern_backup_repository"])
    present = host.get_fact(
        Command,
        command="for p in "
        + " ".join(shlex.quote(p) for p in leftovers)
        + ' ; do if [ -e "$p" ] || [ -L "$p" ]; then echo "$p"; fi; done',
    )
    removed = [
        server.shell(name=f"Remove {path}", commands=[f"rm -rf {shlex.quote(path)}"])
        for path in (present or "").splitlines()
    ]
    if any(path.startswith(UNITS_DIR) for path in (present or "").splitlines()):
        systemd.daemon_reload(name="Reload systemd (units removed)", _if=any_changed(*removed))


@deploy("Lectern backup")
def apply() -> None:
    data = host.data.dict()  # type: ignore[no-untyped-call]  # untyped in pyinfra
    v = role_vars_checked(ROLE, data)
    if v["lectern_backup_state"] == "present":
        _present(v)
    else:
        _absent(v)


# pyinfra executes deploy files (CLI argument, local.include) without a module name;
# importing this module (tests, other deploys) must not run it.
if __name__ != "appliance.deploys.backup":
    apply()
