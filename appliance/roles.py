"""One definition, two engines: the pyinfra side of a role.

Every concern lives in ``roles/<role>/``. Its ``defaults/main.yml`` is the one
documented source of its variables and ``templates/`` holds the one copy of every
file it renders. Ansible reads those natively; pyinfra deploys call into this module
to read the SAME defaults and render the SAME templates, so the engines cannot drift.

Templates must therefore use plain Jinja2 only (no Ansible-only filters or lookups)
and refer only to variables that the role's defaults define.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
ROLES_DIR = REPO_ROOT / "roles"

# Rendered into the header of every managed file, by both engines.
MANAGED_MARKER = "Managed by Lectern; local edits are overwritten."


class RoleError(ValueError):
    """A role or one of its variables is missing or malformed."""


def role_dir(role: str) -> Path:
    path = ROLES_DIR / role
    if not (path / "defaults" / "main.yml").is_file():
        raise RoleError(f"unknown role {role!r}: {path}/defaults/main.yml does not exist")
    return path


def role_defaults(role: str) -> dict[str, Any]:
    """The role's documented defaults, exactly as Ansible would see them."""
    data = yaml.safe_load((role_dir(role) / "defaults" / "main.yml").read_text()) or {}
    if not isinstance(data, dict):
        raise RoleError(f"roles/{role}/defaults/main.yml must be a mapping")
    return data


def role_vars(role: str, host_data: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overridden by inventory data (group_vars/host_vars), Ansible precedence.

    Only the role's own variables are taken from ``host_data``: anything the defaults
    do not declare is not a variable of this role.
    """
    merged = role_defaults(role)
    for key in merged:
        if key in host_data and host_data[key] is not None:
            merged[key] = host_data[key]
    merged["lectern_managed"] = MANAGED_MARKER
    return merged


def template_path(role: str, name: str) -> str:
    """Absolute path of ``roles/<role>/templates/<name>`` for pyinfra's files.template."""
    path = role_dir(role) / "templates" / name
    if not path.is_file():
        raise RoleError(f"roles/{role}/templates/{name} does not exist")
    return str(path)


def known_variables() -> set[str]:
    """Every variable some role documents in its defaults/main.yml."""
    names: set[str] = set()
    for defaults in ROLES_DIR.glob("*/defaults/main.yml"):
        names.update(role_defaults(defaults.parent.parent.name))
    return names
