"""Read an Ansible YAML inventory (hosts.yml + group_vars/ + host_vars/).

One inventory serves both engines: Ansible reads it natively, and pyinfra gets the
same hosts and variables through :mod:`appliance.pyinfra_inventory`, which uses this.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Any variable can be set from the environment as LECTERN_VAR_<name> (the pyinfra path
# for secrets: CI systems inject them as environment variables). It beats the inventory.
ENV_PREFIX = "LECTERN_VAR_"


class InventoryError(ValueError):
    """The inventory is missing or malformed, or a limit matches nothing."""


@dataclass
class Host:
    name: str
    groups: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return str(self.vars.get("ansible_host", self.name))

    @property
    def profile(self) -> str:
        """The host's profile: its first group among pi/server/nas, else its first group."""
        for group in self.groups:
            if group in ("pi", "server", "nas"):
                return group
        return self.groups[0] if self.groups else "-"


@dataclass
class Inventory:
    path: Path
    hosts: dict[str, Host]
    groups: dict[str, list[str]]

    def select(self, limit: str | None) -> list[Host]:
        """Hosts matching a comma-separated list of host and group names ('all' = every host)."""
        if not limit or limit == "all":
            return list(self.hosts.values())
        chosen: dict[str, Host] = {}
        for item in (part.strip() for part in limit.split(",") if part.strip()):
            if item in self.hosts:
                chosen[item] = self.hosts[item]
            elif item in self.groups:
                for name in self.groups[item]:
                    chosen[name] = self.hosts[name]
            else:
                known = ", ".join(sorted([*self.groups, *self.hosts]))
                raise InventoryError(
                    f"{item!r} is neither a host nor a group in {self.path} (known: {known})"
                )
        return list(chosen.values())


class _Vaulted(str):
    """A `!vault` value: decrypted on first use with Ansible's own vault code."""


class _Loader(yaml.SafeLoader):
    pass


def _vault_constructor(loader: yaml.SafeLoader, node: yaml.Node) -> _Vaulted:
    return _Vaulted(loader.construct_scalar(node))  # type: ignore[arg-type]


_Loader.add_constructor("!vault", _vault_constructor)


def _decrypt(value: _Vaulted, where: str) -> str:
    """Decrypt with the password file Ansible uses too ($ANSIBLE_VAULT_PASSWORD_FILE)."""
    from ansible.constants import DEFAULT_VAULT_ID_MATCH
    from ansible.errors import AnsibleError
    from ansible.parsing.vault import VaultLib, VaultSecret

    pw_file = os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE", "")
    if not pw_file or not Path(pw_file).is_file():
        raise InventoryError(
            f"{where} is vault-encrypted: set ANSIBLE_VAULT_PASSWORD_FILE to its password file"
        )
    secret = VaultSecret(Path(pw_file).read_bytes().strip())
    try:
        plain = VaultLib([(DEFAULT_VAULT_ID_MATCH, secret)]).decrypt(value.encode())
    except AnsibleError as exc:
        raise InventoryError(f"{where}: cannot decrypt ({exc.message})") from exc
    return str(plain.decode())


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(), Loader=_Loader) or {}  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise InventoryError(f"{path}: not valid YAML ({exc})") from exc


def _vars_from(folder: Path, name: str) -> dict[str, Any]:
    """Ansible's group_vars/host_vars layout: NAME.yml, NAME.yaml or NAME/*.yml."""
    merged: dict[str, Any] = {}
    candidates = [folder / f"{name}.yml", folder / f"{name}.yaml"]
    if (folder / name).is_dir():
        candidates += sorted((folder / name).glob("*.yml")) + sorted((folder / name).glob("*.yaml"))
    for path in candidates:
        if path.is_file():
            data = _load_yaml(path)
            if not isinstance(data, dict):
                raise InventoryError(f"{path}: must be a mapping of variables")
            merged.update(data)
    return merged


def load(path: str | Path) -> Inventory:
    root = Path(path)
    hosts_file = root / "hosts.yml" if root.is_dir() else root
    if not hosts_file.is_file():
        hint = " (run `make lab` to create the lab inventory)" if "lab" in str(root) else ""
        raise InventoryError(f"inventory {hosts_file} does not exist{hint}")
    base = hosts_file.parent
    data = _load_yaml(hosts_file)
    if not isinstance(data, dict) or "all" not in data:
        raise InventoryError(f"{hosts_file}: expected a YAML inventory with a top-level 'all:'")

    hosts: dict[str, Host] = {}
    groups: dict[str, list[str]] = {}
    host_inline: dict[str, dict[str, Any]] = {}
    # Group vars in the order Ansible applies them: all first, then children depth-first.
    layered: list[tuple[str, dict[str, Any]]] = []

    def walk(group: str, node: Any, parents: list[str]) -> None:
        if node is None:
            node = {}
        if not isinstance(node, dict):
            raise InventoryError(f"{hosts_file}: group {group!r} must be a mapping")
        unknown = set(node) - {"hosts", "vars", "children"}
        if unknown:
            raise InventoryError(
                f"{hosts_file}: group {group!r} has unknown keys {sorted(unknown)}"
            )
        layered.append(
            (group, {**_vars_from(base / "group_vars", group), **(node.get("vars") or {})})
        )
        members = groups.setdefault(group, [])
        for name, hvars in (node.get("hosts") or {}).items():
            host = hosts.setdefault(name, Host(name))
            for g in [*parents, group]:
                if g not in host.groups:
                    host.groups.append(g)
                if name not in groups.setdefault(g, []):
                    groups[g].append(name)
            if name not in members:
                members.append(name)
            host_inline.setdefault(name, {}).update(hvars or {})
        for child, child_node in (node.get("children") or {}).items():
            walk(child, child_node, [*parents, group])

    walk("all", data["all"], [])
    for host in hosts.values():
        merged: dict[str, Any] = {}
        for group, gvars in layered:
            if group in host.groups:
                merged.update(gvars)
        merged.update(_vars_from(base / "host_vars", host.name))
        merged.update(host_inline.get(host.name, {}))
        for key, value in os.environ.items():
            if key.startswith(ENV_PREFIX):
                merged[key[len(ENV_PREFIX) :]] = value
        for key, value in merged.items():
            if isinstance(value, _Vaulted):
                merged[key] = _decrypt(value, f"{host.name}: {key}")
        host.vars = merged
        host.groups = [g for g in host.groups if g != "all"]
    groups.pop("all", None)
    if not hosts:
        raise InventoryError(f"{hosts_file}: no hosts defined")
    return Inventory(path=hosts_file, hosts=hosts, groups=groups)


def pyinfra_data(host: Host) -> dict[str, Any]:
    """Translate Ansible connection variables to pyinfra's, keeping every other variable."""
    data = dict(host.vars)
    mapping = {
        "ansible_host": "ssh_hostname",
        "ansible_user": "ssh_user",
        "ansible_port": "ssh_port",
        "ansible_ssh_private_key_file": "ssh_key",
    }
    for ansible_key, pyinfra_key in mapping.items():
        if ansible_key in data:
            data[pyinfra_key] = data[ansible_key]
    if data.get("ansible_become"):
        data["_sudo"] = True
    if not data.get("lectern_strict_host_keys", False):
        data.setdefault("ssh_known_hosts_file", "/dev/null")
        data.setdefault("ssh_strict_host_key_checking", "off")
    return data
