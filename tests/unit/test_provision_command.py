"""The engine command lines `appliance provision` runs (appliance/provision.py)."""

from __future__ import annotations

import re
import subprocess
import sys
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


def test_ansible_runs_with_mitogen_unless_told_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LECTERN_ANSIBLE_STRATEGY", raising=False)
    _, env = command("ansible", Path("inventories/lab"), "pi", check=False)
    assert env["ANSIBLE_STRATEGY"] == "mitogen_linear"
    assert (Path(env["ANSIBLE_STRATEGY_PLUGINS"]) / "mitogen_linear.py").is_file()
    monkeypatch.setenv("LECTERN_ANSIBLE_STRATEGY", "linear")
    _, env = command("ansible", Path("inventories/lab"), "pi", check=False)
    assert env["ANSIBLE_STRATEGY"] == "linear" and "ANSIBLE_STRATEGY_PLUGINS" not in env
    monkeypatch.setenv("LECTERN_ANSIBLE_STRATEGY", "free")
    with pytest.raises(ProvisionError, match="LECTERN_ANSIBLE_STRATEGY=free: choose one of"):
        command("ansible", Path("inventories/lab"), "pi", check=False)


PID_MODULE = """#!/usr/bin/python
import json, os
from ansible.module_utils.basic import AnsibleModule
AnsibleModule(argument_spec={}).exit_json(changed=False, pid=os.getpid())
"""

PID_PLAY = """- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - {pid: {}, register: one}
    - {pid: {}, register: two}
    - ansible.builtin.debug: {msg: "PIDS {{ one.pid }} {{ two.pid }}"}
"""


@pytest.mark.parametrize("strategy", ["mitogen_linear", "linear"])
def test_this_ansible_core_runs_the_chosen_strategy(
    strategy: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mitogen hooks into ansible-core's internals: a core it does not follow fails here.

    Under mitogen both tasks run in one persistent interpreter (one pid); under linear,
    each task starts its own.
    """
    monkeypatch.setenv("LECTERN_ANSIBLE_STRATEGY", strategy)
    cmd, env = command("ansible", Path("inventories/lab"), "localhost", check=False)
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "pid.py").write_text(PID_MODULE)
    (tmp_path / "play.yml").write_text(PID_PLAY)
    env["ANSIBLE_PYTHON_INTERPRETER"] = sys.executable
    env["ANSIBLE_LIBRARY"] = str(tmp_path / "library")
    proc = subprocess.run(
        [cmd[0], "-i", "localhost,", str(tmp_path / "play.yml")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    found = re.search(r"PIDS (\d+) (\d+)", proc.stdout)
    assert found, proc.stdout[-2000:]
    one, two = found.groups()
    assert (one == two) == (strategy == "mitogen_linear"), (strategy, one, two)
