"""The engine command lines `appliance provision` runs (appliance/provision.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from appliance.provision import CONCERNS, ProvisionError, command
from appliance.roles import REPO_ROOT


def test_pyinfra_gets_one_limit_per_host() -> None:
    cmd, _ = command("pyinfra", Path("inventories/lab"), "pi,server,nas", check=False)
    limits = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--limit"]
    assert limits == ["pi", "server", "nas"]  # a comma list would match no host


def test_ansible_takes_the_comma_list_and_check_adds_diff() -> None:
    cmd, env = command("ansible", Path("inventories/lab"), "pi,server", check=True)
    assert cmd[cmd.index("--limit") + 1] == "pi,server"
    assert cmd[-2:] == ["--check", "--diff"]
    assert env["ANSIBLE_CONFIG"].endswith("ansible.cfg")


def test_only_narrows_both_engines_to_the_named_concerns_in_site_order() -> None:
    cmd, env = command("ansible", Path("inventories/lab"), "pi", check=False, only="proxy,base")
    assert cmd[cmd.index("--tags") + 1] == "base,proxy"
    assert env["LECTERN_CONCERNS"] == "base,proxy"
    cmd, env = command("pyinfra", Path("inventories/lab"), "pi", check=False, only="appliance")
    assert env["LECTERN_CONCERNS"] == "appliance" and "--tags" not in cmd
    cmd, env = command("ansible", Path("inventories/lab"), "pi", check=False)
    assert "--tags" not in cmd and env["LECTERN_CONCERNS"] == ",".join(CONCERNS)


def test_only_with_an_unknown_concern_is_a_one_line_error() -> None:
    with pytest.raises(ProvisionError, match="--only proxi: no such concern; choose from base"):
        command("pyinfra", Path("inventories/lab"), "pi", check=False, only="proxi")


def test_the_playbook_applies_the_concerns_in_site_order_each_tagged() -> None:
    plays = yaml.safe_load((REPO_ROOT / "playbooks" / "site.yml").read_text())
    roles = plays[0]["roles"]
    assert tuple(r["role"] for r in roles) == CONCERNS
    assert all(r["tags"] == [r["role"]] for r in roles)
