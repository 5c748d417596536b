"""`appliance rollout` and `appliance rollback`: the fleet side of releases.

Every host runs the ONE implementation of a release, its own `lectern-release` (installed
by the appliance role, rollback/lectern_release.py), over SSH. This module only decides
the order: canary hosts first, then batches in parallel; it halts as soon as more hosts
failed than --max-fail allows, and hosts not reached by then are left untouched.
"""

from __future__ import annotations

import math
import shlex
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from appliance.inventory import Host
from appliance.remote import run_on, sudo
from appliance.roles import role_vars


class RolloutError(ValueError):
    """Bad arguments (a one-line message for the CLI)."""


@dataclass
class Outcome:
    host: str
    wave: int
    state: str = (
        "pending"  # pending | running | deployed | unchanged | rolled-back | failed | skipped
    )
    release: str = ""
    detail: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.state == "failed"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def batch_size(batch: str, total: int) -> int:
    """'25%' of the fleet (rounded up) or a plain number of hosts; at least 1."""
    text = batch.strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 < percent <= 100:
                raise ValueError
            return max(1, math.ceil(total * percent / 100))
        size = int(text)
        if size < 1:
            raise ValueError
        return size
    except ValueError:
        raise RolloutError(f"--batch {batch!r}: use a number of hosts or a percentage") from None


def waves(hosts: list[Host], canary: int, batch: str) -> list[list[Host]]:
    """The canary wave (the first `canary` hosts, in inventory order), then batches."""
    if canary < 0:
        raise RolloutError("--canary must be 0 or more")
    size = batch_size(batch, len(hosts))
    plan = [hosts[:canary]] if canary else []
    rest = hosts[canary:]
    plan += [rest[i : i + size] for i in range(0, len(rest), size)]
    return [w for w in plan if w]


def release_tool(host: Host) -> str:
    return str(role_vars("appliance", host.vars)["lectern_appliance_release_tool"])


def on_host(host: Host, args: list[str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run the host's lectern-release with `args` (sudo when the inventory says become)."""
    remote = sudo(host) + " ".join(shlex.quote(a) for a in [release_tool(host), *args])
    try:
        return run_on(host, remote, timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(remote, 124, "", f"timed out after {timeout:.0f} s")


def _reason(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else f"exit {proc.returncode}"
    if proc.returncode == 255:  # ssh's own failure: the host was not reached
        return f"unreachable: {text}"
    return text.removeprefix("lectern-release: error: ")


def _run_one(host: Host, args: list[str], outcome: Outcome, notify: Callable[[], None]) -> None:
    outcome.state = "running"
    notify()
    start = time.monotonic()
    proc = on_host(host, args)
    outcome.seconds = round(time.monotonic() - start, 1)
    words = proc.stdout.strip().split()
    if proc.returncode == 0 and words:
        # "deployed TAG DIGEST in slot S" / "unchanged ..." / "rolled back to TAG DIGEST ..."
        outcome.state = {"deployed": "deployed", "unchanged": "unchanged"}.get(
            words[0], "rolled-back" if words[0] == "rolled" else "deployed"
        )
        tail = words[1:] if words[0] != "rolled" else words[3:]
        outcome.release = " ".join(tail[:2])
        # the release is its own column; what is left to say is the slot
        slot = words[words.index("slot") + 1].rstrip(";") if "slot" in words[:-1] else ""
        extra = proc.stdout.strip().split("; ", 1)[1:]  # e.g. a rollback's data restore
        outcome.detail = "; ".join([f"slot {slot}" if slot else "", *extra]).strip("; ")
    else:
        outcome.state = "failed"
        outcome.detail = _reason(proc)
    notify()


def execute(
    hosts: list[Host],
    args: list[str],
    canary: int,
    batch: str,
    max_fail: int,
    notify: Callable[[list[Outcome]], None] = lambda _: None,
) -> list[Outcome]:
    """Run `lectern-release ARGS` wave by wave; halt when failures exceed max_fail."""
    if max_fail < 0:
        raise RolloutError("--max-fail must be 0 or more")
    plan = waves(hosts, canary, batch)
    outcomes = {h.name: Outcome(h.name, i) for i, wave in enumerate(plan) for h in wave}
    ordered = list(outcomes.values())

    def changed() -> None:
        notify(ordered)

    failures = 0
    for index, wave in enumerate(plan):
        with ThreadPoolExecutor(max_workers=len(wave)) as pool:
            for h in wave:
                pool.submit(_run_one, h, args, outcomes[h.name], changed)
        failures += sum(outcomes[h.name].failed for h in wave)
        if failures > max_fail:
            for later in plan[index + 1 :]:
                for h in later:
                    o = outcomes[h.name]
                    o.state = "skipped"
                    o.detail = f"halted: {failures} failed > --max-fail {max_fail}; untouched"
            changed()
            break
    return ordered


def deploy_args(ref: str) -> list[str]:
    if not ref or ref.startswith("-") or any(c.isspace() for c in ref):
        raise RolloutError(f"--tag {ref!r} is not a tag or digest")
    return ["deploy", ref]


def rollback_args(to: str | None) -> list[str]:
    return ["rollback", *(["--to", to] if to else [])]
