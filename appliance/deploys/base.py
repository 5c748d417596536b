"""The base concern, pyinfra side: the twin of roles/base (read its README).

Reads roles/base/defaults/main.yml (overridden by inventory data) and renders
roles/base/templates/, so that a host provisioned by either engine carries the same
files byte for byte; tests/infra/host verifies both. Keep the steps in the order and
with the semantics of roles/base/tasks/*.yml.

Run alone (development):   pyinfra -y @docker/CONTAINER appliance/deploys/base.py
Run by the CLI:            appliance provision HOST  (appliance/deploys/site.py)
Privilege escalation comes from inventory data (``_sudo: true`` for the lab's admin).
"""

from __future__ import annotations

import shlex
from typing import Any

from pyinfra.api.deploy import deploy
from pyinfra.context import host
from pyinfra.facts.files import Directory, File, FileContents
from pyinfra.facts.server import Command, Hostname
from pyinfra.operations import files, server, systemd

from appliance.deploys import (
    ensure_dir,
    ensure_service,
    install_packages,
    render,
    role_vars_checked,
)

ROLE = "base"
JOURNALD_DIR = "/etc/systemd/journald.conf.d"
JOURNALD_DROPIN = f"{JOURNALD_DIR}/50-lectern.conf"
BUILTIN_LOCALES = ("C.UTF-8", "C.utf8", "C", "POSIX")
PI_CONFIG_TXT = ("/boot/firmware/config.txt", "/boot/config.txt")


def _is_pi(v: dict[str, Any]) -> bool:
    """A Raspberry Pi is detected from the board model the kernel reports, not a flag."""
    path = shlex.quote(v["lectern_base_pi_model_path"])
    model = host.get_fact(Command, command=f"tr -d '\\000' < {path} 2>/dev/null || true")
    return "Raspberry Pi" in (model or "")


def _pi(v: dict[str, Any], present: bool) -> None:
    config = next((p for p in PI_CONFIG_TXT if host.get_fact(File, path=p)), None)
    if config:
        files.line(
            name=("Set" if present else "Remove") + f" gpu_mem in {config}",
            path=config,
            line="^gpu_mem=.*$",
            replace=f"gpu_mem={v['lectern_base_pi_gpu_mem']}" if present else "",
            present=present,
        )
    if v["lectern_base_pi_disable_swapfile"] and host.get_fact(File, path="/sbin/dphys-swapfile"):
        ensure_service(
            name=("Stop and disable" if present else "Restore") + " the swap file",
            service="dphys-swapfile",
            running=not present,
            enabled=not present,
        )


def _hostname(name: str) -> None:
    # In place, as Ansible's hostname module (use: debian) does: hostnamectl cannot
    # replace a bind-mounted /etc/hostname (containers), writing into it works.
    current = host.get_fact(Hostname)
    permanent = host.get_fact(FileContents, path="/etc/hostname") or []
    if current != name or [line.strip() for line in permanent] != [name]:
        quoted = shlex.quote(name)
        server.shell(
            name=f"Set the hostname to {name}",
            commands=[f"echo {quoted} > /etc/hostname", f"hostname {quoted}"],
        )


def _present(v: dict[str, Any]) -> None:
    wanted = list(v["lectern_base_packages"]) + list(v["lectern_base_extra_packages"])
    install_packages(name="Install the base packages", packages=wanted)

    locale = v["lectern_base_locale"]
    if locale not in BUILTIN_LOCALES:
        install_packages(name="Install the locales package", packages=["locales"], refresh=False)
        server.locale(name=f"Generate the locale {locale}", locale=locale)
    render(ROLE, "locale.j2", "/etc/default/locale", v)

    tz = v["lectern_base_timezone"]
    files.link(
        name="Point /etc/localtime at the timezone",
        path="/etc/localtime",
        target=f"/usr/share/zoneinfo/{tz}",
        force=True,
        force_backup=False,
    )
    render(ROLE, "timezone.j2", "/etc/timezone", v)

    if v["lectern_base_hostname"]:
        _hostname(v["lectern_base_hostname"])

    server.group(
        name="Create the service group",
        group=v["lectern_base_group"],
        gid=v["lectern_base_gid"],
        system=True,
    )
    server.user(
        name="Create the service user",
        user=v["lectern_base_user"],
        uid=v["lectern_base_uid"],
        group=v["lectern_base_group"],
        home=v["lectern_base_home"],
        shell=v["lectern_base_shell"],
        comment="Lectern service",
        system=True,
        create_home=False,
        ensure_home=False,
    )
    ensure_dir(
        name="Create the service user's home",
        path=v["lectern_base_home"],
        user=v["lectern_base_user"],
        group=v["lectern_base_group"],
        mode="750",
    )

    ensure_dir(
        name="Create the journald drop-in directory",
        path=JOURNALD_DIR,
        user="root",
        group="root",
        mode="755",
    )
    journald = render(ROLE, "journald-lectern.conf.j2", JOURNALD_DROPIN, v)
    systemd.service(
        name="Restart journald",
        service="systemd-journald",
        restarted=True,
        _if=journald.did_change,
    )

    ensure_dir(
        name="Create the Lectern configuration directory",
        path=v["lectern_base_config_dir"],
        user="root",
        group="root",
        mode="755",
    )
    render(ROLE, "release.j2", f"{v['lectern_base_config_dir']}/release", v)

    if _is_pi(v):
        _pi(v, present=True)


def _only_leftover(path: str, ignore: str | None = None) -> bool:
    """True when ``path`` is a directory with nothing in it (besides ``ignore``).

    Errs on the side of keeping: anything unreadable counts as content.
    """
    if not host.get_fact(Directory, path=path):
        return False
    quoted = shlex.quote(path)
    exclude = f" ! -name {shlex.quote(ignore)}" if ignore else ""
    probe = (
        f"find {quoted} -mindepth 1 -maxdepth 1{exclude} -printf x -quit 2>/dev/null"
        " && echo . || echo unreadable"
    )
    return host.get_fact(Command, command=probe) == "."


def _absent(v: dict[str, Any]) -> None:
    # OFF path: remove what _present added. Packages, timezone, locale and hostname
    # are host settings other software depends on: they stay (roles/base/README.md).
    config_dir = v["lectern_base_config_dir"]
    config_dir_unused = _only_leftover(config_dir, ignore="release")
    files.file(name="Remove the release marker", path=f"{config_dir}/release", present=False)
    if config_dir_unused:
        server.shell(
            name="Remove the Lectern configuration directory (nothing else in it)",
            commands=[f"rmdir {shlex.quote(config_dir)}"],
        )

    journald = files.file(name="Remove the journald limits", path=JOURNALD_DROPIN, present=False)
    systemd.service(
        name="Restart journald",
        service="systemd-journald",
        restarted=True,
        _if=journald.did_change,
    )

    home = v["lectern_base_home"]
    if _only_leftover(home):
        server.shell(
            name="Remove the service user's home (empty)",
            commands=[f"rmdir {shlex.quote(home)}"],
        )
    server.user(name="Remove the service user", user=v["lectern_base_user"], present=False)
    server.group(name="Remove the service group", group=v["lectern_base_group"], present=False)

    if _is_pi(v):
        _pi(v, present=False)


@deploy("Lectern base")
def apply() -> None:
    data = host.data.dict()  # type: ignore[no-untyped-call]  # untyped in pyinfra
    v = role_vars_checked(ROLE, data)
    if v["lectern_base_state"] == "present":
        _present(v)
    else:
        _absent(v)


# pyinfra executes deploy files (CLI argument, local.include) without a module name;
# importing this module (tests, other deploys) must not run it.
if __name__ != "appliance.deploys.base":
    apply()
