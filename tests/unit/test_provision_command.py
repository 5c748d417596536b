"""The engine command lines `appliance provision` runs (appliance/provision.py)."""

from __future__ import annotations

from pathlib import Path

from appliance.provision import command


def test_pyinfra_gets_one_limit_per_host() -> None:
    cmd, _ = command("pyinfra", Path("inventories/lab"), "pi,server,nas", check=False)
    limits = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--limit"]
    assert limits == ["pi", "server", "nas"]  # a comma list would match no host


def test_ansible_takes_the_comma_list_and_check_adds_diff() -> None:
    cmd, env = command("ansible", Path("inventories/lab"), "pi,server", check=True)
    assert cmd[cmd.index("--limit") + 1] == "pi,server"
    assert cmd[-2:] == ["--check", "--diff"]
    assert env["ANSIBLE_CONFIG"].endswith("ansible.cfg")
