"""Provision lab hosts by pyinfra AND by Ansible; verify both with one testinfra suite.

pi is provisioned by pyinfra, server by Ansible; nas is left bare to prove a dry run
by either engine changes nothing, and server proves Ansible's --check reports drift
without fixing it.
The suite in tests/infra/host is the same one molecule runs.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from labtools import BIN, REPO, ansible_recap, pyinfra_changes, run

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


def test_the_other_engine_changes_nothing(lab: Path) -> None:
    """One definition, two engines: a host made by one is a no-op for the other (a stamp
    hashed differently once made every switch rewrite rclone.conf and restart the mount)."""
    done = run(APPLIANCE, "provision", "pi", "--engine", "ansible")
    recap = ansible_recap(done.stdout, "pi")
    assert recap["changed"] == 0 and recap["failed"] == 0, recap
    done = run(APPLIANCE, "provision", "server", "--engine", "pyinfra")
    assert pyinfra_changes(done.stdout + done.stderr) == 0, done.stderr[-3000:]


def test_shared_testinfra_suite_passes_on_both_engines_hosts(lab: Path, tmp_path: Path) -> None:
    """The same suite on pi (pyinfra) and server (Ansible), both at once (it mostly waits
    on SSH round trips: ~2 min per host one after the other)."""
    suites: dict[str, subprocess.Popen[str]] = {}
    for host in ("pi", "server"):
        # The suite expects what the inventory asked for (group_vars differ per profile).
        expected = tmp_path / f"{host}-vars.yml"
        expected.write_text(yaml.safe_dump(load(lab).hosts[host].vars))
        suite = ["tests/infra/host", f"--hosts=ssh://{IP[host]}", "--sudo"]
        suite += [f"--ssh-config={lab_mod.ssh_config()}", f"--lectern-vars={expected}"]
        suites[host] = subprocess.Popen(
            [str(BIN / "pytest"), "-q", "-p", "no:cacheprovider", *suite],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    for host, proc in suites.items():
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0 and " passed" in out, f"{host}:\n{out[-4000:]}"


def test_group_vars_reach_both_engines(lab: Path) -> None:
    for host, tz in (("pi", "Europe/Oslo"), ("server", "Europe/Berlin")):
        out = run(*lab_mod.ssh_args(IP[host]), "cat /etc/timezone /etc/lectern/release").stdout
        assert tz in out and f"LECTERN_PROFILE={host}" in out, out


@pytest.mark.parametrize("engine", ["pyinfra", "ansible"])
def test_dry_run_on_a_bare_host_changes_nothing(lab: Path, engine: str) -> None:
    """The whole site, every concern: what a first `CHECK=1` on a new host does."""
    assert not marker_exists("nas"), "nas is expected bare (make lab-down && make lab)"
    done = run(APPLIANCE, "provision", "nas", "--check", "--engine", engine)
    assert not marker_exists("nas"), f"{engine}'s dry run wrote to nas"
    untouched = "test ! -e /opt/lectern && ! command -v docker && ! command -v caddy"
    assert run(*lab_mod.ssh_args(IP["nas"]), untouched, check=False).returncode == 0
    if engine == "ansible":
        # units and packages not yet installed are skipped in check mode, never failed
        recap = ansible_recap(done.stdout, "nas")
        assert recap["failed"] == 0 and recap["changed"] > 0, recap
        assert "fatal:" not in done.stdout and "...ignoring" not in done.stdout


def test_check_mode_reports_drift_without_fixing_it(lab: Path) -> None:
    dropin = "/etc/systemd/journald.conf.d/50-lectern.conf"
    run(*lab_mod.ssh_args(IP["server"]), f"echo '# local edit' | sudo tee -a {dropin}")
    # --only base: the drift is in base's files, and a whole-site pass costs minutes
    base = ("provision", "server", "--engine", "ansible", "--only", "base")
    out = run(APPLIANCE, *base, "--check").stdout
    recap = ansible_recap(out, "server")
    assert recap["changed"] >= 1 and "# local edit" in out  # the diff
    # only base ran (every role's argument check is tagged `always` by Ansible)
    others = re.findall(r"TASK \[(?!base )(\w+) : (?!Validating arguments)", out)
    assert others == [], others
    still = run(*lab_mod.ssh_args(IP["server"]), f"cat {dropin}").stdout
    assert "# local edit" in still, "--check must not change the host"
    fixed = run(APPLIANCE, *base).stdout
    assert ansible_recap(fixed, "server")["failed"] == 0
    assert "# local edit" not in run(*lab_mod.ssh_args(IP["server"]), f"cat {dropin}").stdout


def test_unknown_host_is_a_one_line_error(lab: Path) -> None:
    out = run(APPLIANCE, "provision", "toaster", check=False)
    assert out.returncode == 2
    assert "'toaster' is neither a host nor a group" in out.stderr
    assert "Traceback" not in out.stderr
