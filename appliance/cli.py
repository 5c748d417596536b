"""The `appliance` command: the lab, provisioning, and (later) releases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from appliance import lab as lab_mod
from appliance.inventory import InventoryError, load
from appliance.provision import ENGINES, ProvisionError, provision
from appliance.status import age, fleet

app = typer.Typer(
    help="Lectern appliance control plane.", no_args_is_help=True, pretty_exceptions_enable=False
)
lab_app = typer.Typer(
    help="The lab fleet: pi, server, nas, pc (SMB), registry.", no_args_is_help=True
)
app.add_typer(lab_app, name="lab")
console = Console()
err = Console(stderr=True)

INVENTORY_OPT = typer.Option(
    Path("inventories/lab"), "--inventory", "-i", help="Ansible YAML inventory folder or hosts.yml"
)


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@lab_app.command("up")
def lab_up() -> None:
    """Start the lab (idempotent) and write inventories/lab/hosts.yml."""
    try:
        result = lab_mod.up()
    except lab_mod.LabError as exc:
        fail(str(exc))
    changed = {k: v for k, v in result.items() if v != "ok"}
    console.print(f"lab: {', '.join(f'{k} {v}' for k, v in changed.items()) or 'all nodes up'}")


@lab_app.command("reset")
def lab_reset(
    hosts: Annotated[list[str], typer.Argument(help="lab hosts to make bare again")],
) -> None:
    """Replace lab hosts with bare ones (as if freshly flashed)."""
    try:
        lab_mod.reset(hosts)
    except lab_mod.LabError as exc:
        fail(str(exc))
    console.print(f"lab: {', '.join(hosts)} reset to bare hosts")


@lab_app.command("down")
def lab_down() -> None:
    """Remove everything the lab made."""
    removed = lab_mod.down()
    console.print(f"lab down: removed {', '.join(removed) or 'nothing (no lab)'}")


@lab_app.command("status")
def lab_status() -> None:
    """Print a table of the lab."""
    table = Table(title="Lectern lab")
    for col in ("name", "role", "ip", "state", "check"):
        table.add_column(col)
    rows = lab_mod.status()
    for row in rows:
        style = "green" if row["state"] == "running" else "red"
        table.add_row(
            row["name"], row["role"], row["ip"], f"[{style}]{row['state']}[/]", row["check"]
        )
    console.print(table)
    if not all(r["state"] == "running" for r in rows):
        raise typer.Exit(1)


@app.command("provision")
def provision_cmd(
    target: str = typer.Argument(..., help="host or group name(s), comma-separated, or 'all'"),
    engine: str = typer.Option("pyinfra", "--engine", "-e", help="|".join(ENGINES)),
    inventory: Path = INVENTORY_OPT,
    check: bool = typer.Option(False, "--check", help="dry run: show what would change"),
) -> None:
    """Provision hosts with pyinfra (default) or Ansible from the same definitions."""
    try:
        result = provision(target, engine, inventory, check)
    except ProvisionError as exc:
        fail(str(exc))
    if result.returncode != 0:
        fail(
            f"{engine} failed on {', '.join(result.hosts)} (exit {result.returncode})",
            result.returncode,
        )


def _not_yet(what: str, issue: int) -> None:
    fail(f"{what} is not built yet (issue {issue}); nothing was done.", 3)


@app.command("rollout")
def rollout_cmd(tag: str = typer.Option("", "--tag"), inventory: Path = INVENTORY_OPT) -> None:
    """Roll a release out to the fleet (issue 7)."""
    _not_yet("rollout", 7)


@app.command("rollback")
def rollback_cmd(target: str = typer.Argument("all"), inventory: Path = INVENTORY_OPT) -> None:
    """Roll hosts back to their previous release (issue 7)."""
    _not_yet("rollback", 7)


@app.command("status")
def status_cmd(
    target: str = typer.Argument("all", help="host or group name(s), or 'all'"),
    inventory: Path = INVENTORY_OPT,
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Fleet table: release tag and digest, health, last backup, library source, disk."""
    try:
        hosts = load(inventory).select(target)
    except InventoryError as exc:
        fail(str(exc))
    rows = fleet(hosts)
    if as_json:
        console.print_json(json.dumps(rows))
    else:
        table = Table(title="Lectern fleet")
        for col in (
            "host",
            "profile",
            "release",
            "digest",
            "health",
            "books",
            "backup",
            "library",
            "disk free",
        ):
            table.add_column(col)
        for r in rows:
            lib = r.get("library") or {}
            colour = "green" if r.get("health") == "healthy" else "red"
            table.add_row(
                r["host"],
                r["profile"],
                r.get("tag") or "-",
                (r.get("digest") or "-")[:19],
                f"[{colour}]{r.get('health')}[/]",
                str(r.get("books") or "-"),
                age(r.get("backup_age_s")) if "backup_age_s" in r else "-",
                f"{lib.get('mode', '-')}/{lib.get('transport') or '-'} -> "
                f"{lib.get('serving_from') or '-'}"
                if lib
                else "-",
                f"{r['disk_free_gb']} GB" if "disk_free_gb" in r else "-",
            )
        console.print(table)
    if any(r.get("health") == "unreachable" for r in rows):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
