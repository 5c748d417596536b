"""`appliance provision`: run the site deploy with pyinfra or the site playbook with Ansible.

Both engines get the same inventory, the same role defaults and the same templates.
Before either runs, every selected host is checked for reachability, so an unreachable
host is a one-line error naming the host and the fix rather than an engine traceback.
"""

from __future__ import annotations

import difflib
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from appliance.inventory import Host, InventoryError, load
from appliance.roles import REPO_ROOT, known_variables

ENGINES = ("pyinfra", "ansible")
# Ansible strategies `appliance provision` may run the site playbook with. Mitogen keeps
# one Python interpreter per host for the whole play instead of starting one per task
# (a no-op re-provision of nas: ~58 s linear, ~22 s mitogen_linear; BENCHMARKS.md).
# LECTERN_ANSIBLE_STRATEGY=linear runs plain Ansible, as molecule and `ansible-playbook` do.
ANSIBLE_STRATEGIES = ("mitogen_linear", "linear")
# The concerns in the order both engines apply them (playbooks/site.yml and
# appliance/deploys/site.py; a unit test keeps the playbook in this order).
CONCERNS = ("base", "docker", "library_source", "proxy", "appliance", "backup", "updates")


class ProvisionError(RuntimeError):
    pass


@dataclass
class ProvisionResult:
    engine: str
    hosts: list[str]
    returncode: int


def check_reachable(hosts: list[Host], timeout: float = 5.0) -> None:
    problems = []
    for host in hosts:
        port = int(host.vars.get("ansible_port", 22))
        try:
            with socket.create_connection((host.address, port), timeout=timeout):
                pass
        except OSError as exc:
            problems.append(
                f"{host.name} ({host.address}:{port}) is unreachable: {exc.strerror or exc}. "
                "Check that it is powered on and on the network"
                + (" (lab: run `make lab`)." if host.vars.get("lectern_lab") else ".")
            )
    if problems:
        raise ProvisionError("\n".join(problems))


# Variables the inventory may set that no role declares: connection settings and the
# facts the lab writes about itself.
_NOT_ROLE_VARS = ("lectern_lab", "lectern_strict_host_keys")


def check_variables(hosts: list[Host]) -> None:
    """A lectern_* variable no role declares is a typo: fail before touching any host."""
    known = known_variables()
    for host in hosts:
        for key in host.vars:
            if not key.startswith("lectern_") or key in known or key.startswith(_NOT_ROLE_VARS):
                continue
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ProvisionError(
                f"{host.name}: unknown variable {key}{hint}; every variable is documented in "
                "roles/<role>/defaults/main.yml"
            )


def check_secrets(hosts: list[Host]) -> None:
    """Every *_file variable that names a secret must exist and be private (0600)."""
    for host in hosts:
        for key, value in host.vars.items():
            if key.endswith(("_password_file", "_secret_file")) and isinstance(value, str):
                path = Path(value)
                if not path.is_file():
                    raise ProvisionError(
                        f"{host.name}: secret file {value} ({key}) does not exist; create it "
                        "or set the variable in your inventory"
                    )
                if path.stat().st_mode & 0o077:
                    raise ProvisionError(
                        f"{host.name}: secret file {value} is readable by others; chmod 600 it"
                    )


def executable(name: str) -> str:
    """An engine's executable: the one beside this Python (the venv) first, then PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise ProvisionError(f"{name} is not installed: run `make venv`")
    return found


def select_concerns(only: str) -> list[str]:
    """``--only proxy,appliance`` -> those concerns in site order; '' -> all of them."""
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in CONCERNS]
    if unknown:
        raise ProvisionError(
            f"--only {', '.join(unknown)}: no such concern; choose from {', '.join(CONCERNS)}"
        )
    return [name for name in CONCERNS if name in wanted] or list(CONCERNS)


def ansible_strategy(env: dict[str, str]) -> None:
    """Choose the playbook's strategy in ``env`` from $LECTERN_ANSIBLE_STRATEGY."""
    strategy = env.get("LECTERN_ANSIBLE_STRATEGY") or ANSIBLE_STRATEGIES[0]
    if strategy not in ANSIBLE_STRATEGIES:
        raise ProvisionError(
            f"LECTERN_ANSIBLE_STRATEGY={strategy}: choose one of {', '.join(ANSIBLE_STRATEGIES)}"
        )
    if strategy == "mitogen_linear":
        try:
            import ansible_mitogen
        except ImportError as exc:
            raise ProvisionError(
                "mitogen is not installed: run `make venv`, or set LECTERN_ANSIBLE_STRATEGY=linear"
            ) from exc
        plugins = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
        env["ANSIBLE_STRATEGY_PLUGINS"] = str(plugins)
    env["ANSIBLE_STRATEGY"] = strategy


def command(
    engine: str, inventory: Path, limit: str, check: bool, only: str = ""
) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, LECTERN_INVENTORY=str(inventory), PYTHONPATH=str(REPO_ROOT))
    concerns = select_concerns(only)
    env["LECTERN_CONCERNS"] = ",".join(concerns)  # read by appliance/deploys/site.py
    if engine == "pyinfra":
        # pyinfra takes one name per --limit (a comma list matches no host at all)
        limits = [arg for name in limit.split(",") for arg in ("--limit", name)]
        cmd = [
            executable("pyinfra"),
            "-y",
            *limits,
            "appliance/pyinfra_inventory.py",
            "appliance/deploys/site.py",
        ]
        if check:
            cmd[1:1] = ["--dry", "--diff"]
        return cmd, env
    if engine == "ansible":
        env["ANSIBLE_CONFIG"] = str(REPO_ROOT / "ansible.cfg")
        ansible_strategy(env)
        cmd = [
            executable("ansible-playbook"),
            "-i",
            str(inventory),
            "--limit",
            limit,
            "playbooks/site.yml",
        ]
        if len(concerns) < len(CONCERNS):
            cmd += ["--tags", ",".join(concerns)]  # each role is tagged with its name
        if check:
            cmd += ["--check", "--diff"]
        return cmd, env
    raise ProvisionError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")


def provision(
    target: str, engine: str, inventory: str | Path, check: bool = False, only: str = ""
) -> ProvisionResult:
    if engine not in ENGINES:
        raise ProvisionError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    try:
        inv = load(inventory)
        hosts = inv.select(target)
    except InventoryError as exc:
        raise ProvisionError(str(exc)) from exc
    check_variables(hosts)
    check_secrets(hosts)
    check_reachable(hosts)
    select_concerns(only)  # a typo fails before any host is contacted
    cmd, env = command(engine, inv.path.parent, ",".join(h.name for h in hosts), check, only)
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, check=False)
    return ProvisionResult(engine=engine, hosts=[h.name for h in hosts], returncode=proc.returncode)
