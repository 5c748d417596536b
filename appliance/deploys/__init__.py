"""pyinfra deploys, one per concern in roles/ (see appliance.roles and DESIGN.md).

Each deploy reads its role's defaults and renders its role's templates through
appliance.roles, and validates the merged variables against the role's
``meta/argument_specs.yml`` with :func:`role_vars_checked`, the check Ansible does
before it runs the role. A bad variable is one line naming the variable and the fix.
"""

from __future__ import annotations

import hashlib
import posixpath
import shlex
from collections.abc import Mapping
from io import StringIO
from pathlib import Path
from typing import IO, Any

import jinja2
import yaml
from pyinfra.api.util import get_template
from pyinfra.context import host, state
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.server import Command
from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus
from pyinfra.operations import apt, files, systemd

from appliance.roles import RoleError, role_dir, role_vars, template_path

# Ansible's argument-spec type names -> the Python types a YAML value may have.
_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "path": (str,),
    "int": (int,),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
    "float": (float, int),
    "raw": (object,),
}


def argument_spec(role: str) -> dict[str, Any]:
    """The ``main`` entry point options of roles/<role>/meta/argument_specs.yml."""
    path = role_dir(role) / "meta" / "argument_specs.yml"
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    options = data.get("argument_specs", {}).get("main", {}).get("options", {})
    if not isinstance(options, dict):
        raise RoleError(f"roles/{role}/meta/argument_specs.yml: main.options must be a mapping")
    return options


def _is_type(value: Any, type_name: str) -> bool:
    types = _TYPES.get(type_name, (object,))
    if type_name in ("int", "float") and isinstance(value, bool):
        return False  # bool is an int subclass; Ansible does not accept it either
    return isinstance(value, types)


def validate(role: str, variables: Mapping[str, Any]) -> None:
    """Check ``variables`` against the role's argument spec (type, elements, choices)."""
    for name, spec in argument_spec(role).items():
        if name not in variables:
            if spec.get("required"):
                raise RoleError(f"roles/{role}: {name} is required; set it in your inventory")
            continue
        value = variables[name]
        type_name = spec.get("type", "str")
        if type_name == "int" and isinstance(value, str) and value.strip().isdigit():
            continue  # Ansible converts "1500" to 1500 as well
        if not _is_type(value, type_name):
            raise RoleError(
                f"roles/{role}: {name} must be of type {type_name}, got {value!r}; "
                "fix it in your inventory (group_vars/host_vars)"
            )
        elements = spec.get("elements")
        if type_name == "list" and elements:
            bad = [item for item in value if not _is_type(item, elements)]
            if bad:
                raise RoleError(f"roles/{role}: {name} must be a list of {elements}, got {bad!r}")
        choices = spec.get("choices")
        if choices and value not in choices:
            raise RoleError(
                f"roles/{role}: {name} must be one of {', '.join(map(str, choices))}, got {value!r}"
            )


def role_vars_checked(role: str, host_data: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`appliance.roles.role_vars`, validated against the role's argument spec."""
    variables = role_vars(role, host_data)
    validate(role, variables)
    return variables


class Unchanged:
    """Stands in for an operation left out because its file already matches.

    Answers like pyinfra's OperationMeta where the deploys use it (``did_change`` in
    ``_if=``/``any_changed``, ``will_change``).
    """

    will_change = False

    def did_change(self) -> bool:
        return False


# (host, directory) -> {file name: "mode:user:group sha1"}, read once per run. pyinfra
# asks for a File, a Directory and a Sha1File fact (three SSH round trips) for every
# file it uploads; one listing per directory makes an unchanged file cost none.
_LISTINGS: dict[tuple[str, str], dict[str, str]] = {}

_LIST = (
    "cd {dir} 2>/dev/null || exit 0; for f in *; do"
    ' if [ -L "$f" ]; then continue;'
    ' elif [ -f "$f" ]; then printf \'%s\\t%s \' "$f" "$(stat -c \'%a:%U:%G\' -- "$f")";'
    ' sha1sum < "$f" | cut -d" " -f1;'
    ' elif [ -d "$f" ]; then printf \'%s/\\t%s\\n\' "$f" "$(stat -c \'%a:%U:%G\' -- "$f")";'
    " fi; done"
)


def listing_command(directory: str) -> str:
    """Shell: a line per regular file in ``directory``, ``name TAB mode:user:group sha1``,
    and per subdirectory, ``name/ TAB mode:user:group``; links are left out."""
    return _LIST.format(dir=shlex.quote(directory))


def parse_listing(out: str) -> dict[str, str]:
    entries = (line.split("\t", 1) for line in out.splitlines() if "\t" in line)
    return {name: file_state for name, file_state in entries}


def _octal(mode: str) -> str:
    """``mode`` as stat's %a prints it ("0644" -> "644")."""
    return f"{int(mode, 8):o}"


def file_state(content: bytes, mode: str, user: str, group: str) -> str:
    """The listing's entry for a file holding ``content`` with this mode and owner."""
    return f"{_octal(mode)}:{user}:{group} {hashlib.sha1(content).hexdigest()}"


def _entry(path: str, is_dir: bool = False) -> str | None:
    """The listing's entry for the file (or directory) ``path``, read once per run."""
    if state.config.DIFF:
        return None  # --diff shows pyinfra's own comparison
    parent, name = posixpath.split(path.rstrip("/"))
    key = (host.name, parent)
    if key not in _LISTINGS:
        out = host.get_fact(Command, command=listing_command(parent))
        _LISTINGS[key] = parse_listing(out or "")
    return _LISTINGS[key].get(name + "/" if is_dir else name)


def _matches(dest: str, content: bytes, mode: str, user: str, group: str) -> bool:
    """Whether ``dest`` already holds ``content`` with this mode and owner."""
    return _entry(dest) == file_state(content, mode, user, group)


def ensure_dir(
    name: str, path: str, mode: str, user: str | None = None, group: str | None = None
) -> Any:
    """files.directory, or :class:`Unchanged` when ``path`` is already a directory with
    this mode (and owner, when given): no SSH round trip, like :func:`put`."""
    entry = _entry(path, is_dir=True)
    if entry is not None:
        have_mode, have_user, have_group = entry.split(":")
        if have_mode == _octal(mode) and user in (None, have_user) and group in (None, have_group):
            return Unchanged()
    return files.directory(name=name, path=path, user=user, group=group, mode=mode)


def put(
    name: str, src: str | Path | IO[str], dest: str, mode: str, user: str = "root",
    group: str = "root",
) -> Any:  # fmt: skip
    """files.put, or :class:`Unchanged` when ``dest`` already matches (no SSH round trip)."""
    upload: str | IO[str]
    if isinstance(src, (str, Path)):
        content = Path(src).read_bytes()
        upload = str(src)
    else:
        text = src.read()
        content = text.encode()
        upload = StringIO(text)
    if _matches(dest, content, mode, user, group):
        return Unchanged()
    return files.put(name=name, src=upload, dest=dest, user=user, group=group, mode=mode)


def render(
    role: str, name: str, dest: str, v: Mapping[str, Any], mode: str = "644", **extra: Any
) -> Any:
    """files.template of roles/<role>/templates/<name>, rendered exactly as Ansible does.

    root-owned, Ansible's template default trim_blocks=True; the role's variables ``v``
    (plus ``extra`` template variables) go to the template. Rendered here with pyinfra's
    own template loader, so that an unchanged file costs no operation (see :func:`put`).
    """
    src = str(template_path(role, name))
    data = {**v, **extra, "host": host, "state": state, "inventory": state.inventory}
    try:
        output = get_template(src, {"trim_blocks": True}).render(data)
    except jinja2.TemplateError as e:
        raise RoleError(f"roles/{role}/templates/{name}: {e}") from None
    return put(f"Render {dest}", StringIO(output), dest, mode)


# host -> fact class -> its value for every unit (or package), read once per run. pyinfra
# asks SystemdStatus and SystemdEnabled for every systemd.service operation and
# DebPackages for every apt.packages one; facts are read while operations are prepared,
# before any of them runs, so one reading per run sees what each would have seen.
_FACTS: dict[tuple[str, type], Any] = {}


def _host_fact(fact: type) -> Any:
    key = (host.name, fact)
    if key not in _FACTS:
        _FACTS[key] = host.get_fact(fact) or {}
    return _FACTS[key]


# what systemd.service leaves as is; any other name gets ".service", as pyinfra does
_UNIT_SUFFIXES = (
    ".service", ".socket", ".device", ".mount", ".automount", ".swap", ".target", ".path",
    ".timer", ".slice", ".scope",
)  # fmt: skip


def ensure_service(
    name: str,
    service: str,
    running: bool | None = True,
    enabled: bool | None = None,
    daemon_reload: bool = False,
) -> Any:
    """systemd.service, or :class:`Unchanged` when the unit is already running (or not)
    and enabled (or not) as asked. A unit systemd has not loaded goes to pyinfra."""
    unit = service if service.endswith(_UNIT_SUFFIXES) else f"{service}.service"
    active = _host_fact(SystemdStatus).get(unit)
    is_enabled = _host_fact(SystemdEnabled).get(unit)
    if (
        not daemon_reload
        and active is not None
        and running in (None, active)
        and (enabled is None or is_enabled == enabled)
    ):
        return Unchanged()
    return systemd.service(
        name=name,
        service=service,
        running=running,
        enabled=enabled,
        daemon_reload=daemon_reload,
    )


def installed_packages() -> Mapping[str, Any]:
    """The host's Debian packages (DebPackages), read once per run."""
    packages: Mapping[str, Any] = _host_fact(DebPackages)
    return packages


def install_packages(
    name: str, packages: list[str], no_recommends: bool = False, refresh: bool = True
) -> Any:
    """apt.packages (present), or :class:`Unchanged` when every package is installed.

    With ``refresh``, the apt index is refreshed first, and only when a package is
    missing: a no-op run changes nothing however old the index is (tasks/present.yml's
    "Refresh the apt package index when ... missing").
    """
    missing = [package for package in packages if package not in installed_packages()]
    if not missing:
        return Unchanged()
    if refresh:
        apt.update(name=f"Refresh the apt package index (missing: {' '.join(missing)})")
    return apt.packages(name=name, packages=packages, no_recommends=no_recommends)
