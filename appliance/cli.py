"""The `appliance` command: the lab, provisioning, releases and the fleet status."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from appliance import backup_cli
from appliance import lab as lab_mod
from appliance import rollout as rollout_mod
from appliance.inventory import InventoryError, load
from appliance.provision import ENGINES, ProvisionError, provision
from appliance.rollout import Outcome, RolloutError
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
    only: str = typer.Option(
        "",
        "--only",
        help="apply only these concerns (comma list, e.g. proxy,appliance); "
        "the others must have been applied before",
    ),
) -> None:
    """Provision hosts with pyinfra (default) or Ansible from the same definitions."""
    try:
        result = provision(target, engine, inventory, check, only)
    except ProvisionError as exc:
        fail(str(exc))
    if result.returncode != 0:
        fail(
            f"{engine} failed on {', '.join(result.hosts)} (exit {result.returncode})",
            result.returncode,
        )


def _outcome_table(title: str, outcomes: list[Outcome]) -> Table:
    table = Table(title=title)
    for col in ("host", "wave", "state", "release", "time", "detail"):
        table.add_column(col)
    colours = {"deployed": "green", "rolled-back": "green", "unchanged": "cyan"}
    colours |= {"failed": "red", "skipped": "yellow", "running": "blue"}
    for o in outcomes:
        colour = colours.get(o.state, "white")
        table.add_row(
            o.host,
            str(o.wave),
            f"[{colour}]{o.state}[/]",
            o.release[:40] or "-",
            f"{o.seconds:.0f}s" if o.seconds else "-",
            o.detail[-90:],
        )
    return table


def _run_releases(
    title: str,
    target: str,
    inventory: Path,
    args_for: Callable[[], list[str]],
    canary: int,
    batch: str,
    max_fail: int,
    as_json: bool,
) -> None:
    try:
        hosts = load(inventory).select(target)
        args = args_for()
        execute_args = (hosts, args, canary, batch, max_fail)
        rollout_mod.waves(hosts, canary, batch)  # argument errors before anything runs
    except (InventoryError, RolloutError) as exc:
        fail(str(exc))
    with Live(
        _outcome_table(title, []), console=err, transient=not err.is_terminal, auto_refresh=False
    ) as live:
        lock = threading.Lock()

        def show(outcomes: list[Outcome]) -> None:
            with lock:
                live.update(_outcome_table(title, outcomes), refresh=True)

        outcomes = rollout_mod.execute(*execute_args, notify=show)
    if as_json:
        console.print_json(json.dumps([o.as_dict() for o in outcomes]))
    else:
        console.print(_outcome_table(title, outcomes))
    failed = [o.host for o in outcomes if o.failed]
    skipped = [o.host for o in outcomes if o.state == "skipped"]
    summary = f"{title}: {len(outcomes) - len(failed) - len(skipped)} ok"
    summary += f", {len(failed)} failed ({', '.join(failed)})" if failed else ""
    summary += f", {len(skipped)} untouched ({', '.join(skipped)})" if skipped else ""
    err.print(summary, highlight=False)
    if failed or skipped:
        raise typer.Exit(1)


@app.command("rollout")
def rollout_cmd(
    tag: str = typer.Option(..., "--tag", help="release tag or sha256:digest to deploy"),
    limit: str = typer.Option("all", "--limit", "-l", help="host or group name(s), or 'all'"),
    canary: int = typer.Option(1, "--canary", help="hosts updated first, alone"),
    batch: str = typer.Option("25%", "--batch", help="hosts per later wave: N or N%"),
    max_fail: int = typer.Option(0, "--max-fail", help="failed hosts tolerated before halting"),
    inventory: Path = INVENTORY_OPT,
    as_json: bool = typer.Option(False, "--json", help="machine-readable result"),
) -> None:
    """Gated deploy of a release: canary first, then batches; halts past --max-fail."""
    _run_releases(
        f"rollout {tag}",
        limit,
        inventory,
        lambda: rollout_mod.deploy_args(tag),
        canary,
        batch,
        max_fail,
        as_json,
    )


@app.command("rollback")
def rollback_cmd(
    target: str = typer.Argument("all", help="host or group name(s), or 'all'"),
    to: str = typer.Option("", "--to", help="an earlier release's tag (default: the previous)"),
    inventory: Path = INVENTORY_OPT,
    as_json: bool = typer.Option(False, "--json", help="machine-readable result"),
) -> None:
    """Roll hosts back to their previous (or --to) release, all at once; works offline."""
    _run_releases(
        f"rollback{' to ' + to if to else ''}",
        target,
        inventory,
        lambda: rollout_mod.rollback_args(to or None),
        0,
        "100%",
        10**6,
        as_json,
    )


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


@app.command("backup")
def backup_cmd(
    target: str = typer.Argument(..., help="host or group name(s), comma-separated, or 'all'"),
    inventory: Path = INVENTORY_OPT,
) -> None:
    """Take a backup snapshot of /data on each host now; prints `HOST SNAPSHOT_ID`."""
    try:
        results = backup_cli.backup(target, inventory)
    except backup_cli.BackupCliError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    for r in results:
        if r.ok:
            console.print(f"{r.host} {r.snapshot}", highlight=False, soft_wrap=True)
        else:
            err.print(f"[bold red]error:[/] {r.error}", highlight=False, soft_wrap=True)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@app.command("restore")
def restore_cmd(
    target: str = typer.Argument(..., help="ONE host"),
    snapshot: str = typer.Option("", "--snapshot", help="snapshot id (or 'latest'); required"),
    inventory: Path = INVENTORY_OPT,
) -> None:
    """Restore a host's /data from a snapshot (stops the app, restores, starts it)."""
    try:
        result = backup_cli.restore(target, snapshot, inventory)
    except backup_cli.BackupCliError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    console.print(
        f"{result.host}: restored snapshot {result.snapshot}; {result.detail}", soft_wrap=True
    )


if __name__ == "__main__":
    app()
