"""The stamp beside rclone.conf: both engines must compute the same hash of the declared
remote, or switching engines rewrites rclone.conf (and restarts the SMB mount) every run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from appliance.deploys.library_source import remote_hash
from appliance.roles import REPO_ROOT, role_dir

REMOTE = {
    "type": "smb",
    "host": "172.30.57.11",
    "user": "Calibre",
    "pass": "s3cr:et=x",
    "port": 445,
}


def role_hash_expression() -> str:
    """The set_fact expression of tasks/rclone_conf.yml, exactly as the role has it."""
    tasks = yaml.safe_load((role_dir("library_source") / "tasks" / "rclone_conf.yml").read_text())
    task = next(t for t in tasks if t["name"] == "Hash the declared remote")
    return str(task["ansible.builtin.set_fact"]["library_source__remote_hash"])


def test_pyinfra_hashes_the_remote_as_the_ansible_role_does(tmp_path: Path) -> None:
    play = [
        {
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {
                "library_source__remote": REMOTE,
                "lectern_library_rclone_remote_name": "lectern-source",
            },
            "tasks": [
                {"ansible.builtin.set_fact": {"h": role_hash_expression()}},
                {"ansible.builtin.debug": {"msg": "HASH={{ h }}"}},
            ],
        }
    ]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "play.yml"],
        cwd=tmp_path,
        env={
            "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
            "ANSIBLE_STDOUT_CALLBACK": "json",
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(proc.stdout)["plays"][0]["tasks"][1]["hosts"]["localhost"]["msg"]
    assert result == "HASH=" + remote_hash(REMOTE, "lectern-source")
