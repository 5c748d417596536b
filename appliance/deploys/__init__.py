"""pyinfra deploys, one per concern in roles/ (see appliance.roles and DESIGN.md).

Each deploy reads its role's defaults and renders its role's templates through
appliance.roles, and validates the merged variables against the role's
``meta/argument_specs.yml`` with :func:`role_vars_checked`, the check Ansible does
before it runs the role. A bad variable is one line naming the variable and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from pyinfra.operations import files

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


def render(
    role: str, name: str, dest: str, v: Mapping[str, Any], mode: str = "644", **extra: Any
) -> Any:
    """files.template of roles/<role>/templates/<name>, rendered exactly as Ansible does.

    root-owned, Ansible's template default trim_blocks=True; the role's variables ``v``
    (plus ``extra`` template variables or operation arguments) go to the template.
    """
    return files.template(
        name=f"Render {dest}",
        src=template_path(role, name),
        dest=dest,
        user="root",
        group="root",
        mode=mode,
        jinja_env_kwargs={"trim_blocks": True},
        **{**v, **extra},
    )
