"""Helpers for lab tests: run commands with the venv on PATH, parse engine results."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(
    *args: str,
    check: bool = True,
    timeout: float = 900,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository; ``env`` adds to the environment, ``stdin`` is
    fed to the command."""
    env = dict(
        os.environ,
        PATH=f"{BIN}:{os.environ['PATH']}",
        ANSIBLE_FORCE_COLOR="0",
        NO_COLOR="1",
        TERM="dumb",
        **(env or {}),
    )
    proc = subprocess.run(
        args,
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
            f"\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def pyinfra_changes(output: str) -> int:
    """Operations that changed something, from pyinfra's 'Grand total' results row."""
    match = re.search(r"Grand total\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)", output)
    assert match, f"no pyinfra results table in output:\n{output[-3000:]}"
    success, error = match.group(2), match.group(3)
    assert error == "-", f"pyinfra reported errors:\n{output[-3000:]}"
    return 0 if success == "-" else int(success)


def ansible_recap(output: str, host: str) -> dict[str, int]:
    match = re.search(rf"^{re.escape(host)}\s+:\s+(.*)$", output, re.MULTILINE)
    assert match, f"no PLAY RECAP line for {host}:\n{output[-3000:]}"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}
