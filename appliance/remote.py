"""Commands on inventory hosts over SSH, as `appliance status`, `rollout`, `rollback`,
`backup` and `restore` run them: the inventory's user, key and port, root through
`sudo -n` when the inventory says become, and never an interactive prompt."""

from __future__ import annotations

import subprocess

from appliance.inventory import Host


def ssh_command(host: Host) -> list[str]:
    v = host.vars
    cmd = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"]
    if not v.get("lectern_strict_host_keys", False):
        cmd += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    if v.get("ansible_ssh_private_key_file"):
        cmd += ["-i", str(v["ansible_ssh_private_key_file"])]
    if v.get("ansible_port"):
        cmd += ["-p", str(v["ansible_port"])]
    user = v.get("ansible_user")
    cmd.append(f"{user}@{host.address}" if user else host.address)
    return cmd


def sudo(host: Host) -> str:
    """The prefix that makes a remote command run as root on ``host`` ('' without become)."""
    return "sudo -n " if host.vars.get("ansible_become") else ""


def run_on(
    host: Host, remote: str, timeout: float, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``remote`` (a shell command line) on ``host``; ssh's own failures exit 255.

    Raises subprocess.TimeoutExpired after ``timeout`` seconds: callers word that themselves.
    """
    return subprocess.run(
        [*ssh_command(host), remote],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
