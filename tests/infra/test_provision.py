"""Provision lab hosts by pyinfra AND by Ansible; verify both with one testinfra suite.

pi is provisioned by pyinfra, server by Ansible; nas is left bare to prove --check
changes nothing. The suite in tests/infra/host is the same one molecule runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from labtools import BIN, ansible_recap, pyinfra_changes, run

from appliance import lab as lab_mod
from appliance.inventory import load

APPLIANCE = str(BIN / "appliance")
IP = {n.name: n.ip for n in lab_mod.NODES}


def marker_exists(host: str) -> bool:
    probe = run(*lab_mod.ssh_args(IP[host]), "test -e /etc/lectern/release", check=False)
    return probe.returncode == 0


@pytest.mark.parametrize(("host", "engine"), [("pi", "pyinfra"), ("server", "ansible")])
def test_provision_then_reprovision_changes_nothing(lab: Path, host: str, engine: str) -> None:
    first = run(APPLIANCE, "provision", host, "--engine", engine)
    assert marker_exists(host)
    done = run(APPLIANCE, "provision", host, "--engine", engine)
    second = done.stdout + done.stderr  # pyinfra reports on stderr
    if engine == "pyinfra":
        assert pyinfra_changes(second) == 0, second[-3000:]
    else:
        recap = ansible_recap(second, host)
        assert recap["changed"] == 0 and recap["failed"] == 0, recap
    assert first.returncode == 0


@pytest.mark.parametrize("host", ["pi", "server"])
def test_shared_testinfra_suite_passes(lab: Path, host: str, tmp_path: Path) -> None:
    # The suite expects what the inventory asked for (group_vars differ per profile).
    expected = tmp_path / "vars.yml"
    expected.write_text(yaml.safe_dump(load(lab).hosts[host].vars))
    suite = ["tests/infra/host", f"--hosts=ssh://{IP[host]}", "--sudo"]
    suite += [f"--ssh-config={lab_mod.ssh_config()}", f"--lectern-vars={expected}"]
    out = run(str(BIN / "pytest"), "-q", "-p", "no:cacheprovider", *suite)
    assert " passed" in out.stdout and " failed" not in out.stdout


def test_group_vars_reach_both_engines(lab: Path) -> None:
    for host, tz in (("pi", "Europe/Oslo"), ("server", "Europe/Berlin")):
        out = run(*lab_mod.ssh_args(IP[host]), "cat /etc/timezone /etc/lectern/release").stdout
        assert tz in out and f"LECTERN_PROFILE={host}" in out, out


@pytest.mark.parametrize("engine", ["pyinfra", "ansible"])
def test_check_mode_changes_nothing(lab: Path, engine: str) -> None:
    assert not marker_exists("nas")
    out = run(APPLIANCE, "provision", "nas", "--engine", engine, "--check")
    assert out.returncode == 0
    assert not marker_exists("nas"), f"--check with {engine} wrote to nas"


def test_unknown_host_is_a_one_line_error(lab: Path) -> None:
    out = run(APPLIANCE, "provision", "toaster", check=False)
    assert out.returncode == 2
    assert "'toaster' is neither a host nor a group" in out.stderr
    assert "Traceback" not in out.stderr
