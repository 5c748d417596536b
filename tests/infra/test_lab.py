"""The lab itself: real hosts, a real SMB share made by calibredb, a real registry."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import urllib.request
from pathlib import Path

from labtools import BIN, run

from appliance import lab as lab_mod


def smb_auth() -> str:
    return f"{lab_mod.SMB_USER}%{lab_mod.smb_secret_file().read_text().strip()}"


def test_lab_up_again_changes_nothing(lab: Path) -> None:
    out = run(str(BIN / "appliance"), "lab", "up").stdout
    assert "all nodes up" in out


def test_status_table_lists_every_node(lab: Path) -> None:
    out = run(str(BIN / "appliance"), "lab", "status").stdout
    for node in lab_mod.NODES:
        assert node.name in out and node.ip in out
    assert out.count("running") == len(lab_mod.NODES)


def test_inventory_reaches_every_host_by_ssh(lab: Path) -> None:
    for node in lab_mod.NODES:
        if node.role == "host":
            out = run(*lab_mod.ssh_args(node.ip), "sudo -n true && systemctl is-system-running")
            assert out.stdout.strip() in ("running", "degraded"), out.stdout


def test_smb_share_serves_the_calibre_library(lab: Path, tmp_path: Path) -> None:
    pc = next(n for n in lab_mod.NODES if n.role == "pc")
    shares = run("smbclient", "-L", f"//{pc.ip}", "-U", smb_auth()).stdout
    assert lab_mod.SMB_SHARE in shares
    listing = run(
        "smbclient", f"//{pc.ip}/{lab_mod.SMB_SHARE}", "-U", smb_auth(), "-c", "ls"
    ).stdout
    assert "metadata.db" in listing
    # The copy fetched over SMB is the library calibredb wrote: same books.
    got = tmp_path / "metadata.db"
    run(
        "smbclient",
        f"//{pc.ip}/{lab_mod.SMB_SHARE}",
        "-U",
        smb_auth(),
        "-c",
        f"get metadata.db {got}",
    )
    with sqlite3.connect(f"file:{got}?mode=ro", uri=True) as db:
        rows = db.execute("select path from books").fetchall()
    assert len(rows) == lab_mod.LIBRARY_BOOKS
    first_author_dir = rows[0][0].split("/")[0]
    assert first_author_dir in listing  # book folders are visible through the share


def test_smb_share_is_read_only_and_needs_credentials(lab: Path) -> None:
    pc = next(n for n in lab_mod.NODES if n.role == "pc")
    bad = run(
        "smbclient",
        f"//{pc.ip}/{lab_mod.SMB_SHARE}",
        "-U",
        "calibre%wrong",
        "-c",
        "ls",
        check=False,
    )
    assert bad.returncode != 0 and "NT_STATUS_LOGON_FAILURE" in bad.stdout + bad.stderr
    put = run(
        "smbclient",
        f"//{pc.ip}/{lab_mod.SMB_SHARE}",
        "-U",
        smb_auth(),
        "-c",
        "put /etc/hostname intruder.txt",
        check=False,
    )
    assert "NT_STATUS_ACCESS_DENIED" in put.stdout + put.stderr


def test_registry_accepts_and_serves_images(lab: Path) -> None:
    ref = "127.0.0.1:5000/lectern/debian-base:lab-test"
    run("docker", "tag", "lectern/debian-base:bookworm", ref)
    run("docker", "push", ref)
    with urllib.request.urlopen("http://127.0.0.1:5000/v2/_catalog", timeout=5) as resp:
        assert "lectern/debian-base" in json.load(resp)["repositories"]
    run("docker", "rmi", ref)
    run("docker", "pull", ref)


def test_arm64_base_image_runs_under_qemu(lab: Path) -> None:
    arch = run(
        "docker",
        "image",
        "inspect",
        "-f",
        "{{.Architecture}}",
        "lectern/debian-base:bookworm-arm64",
    ).stdout.strip()
    assert arch == "arm64"
    out = subprocess.run(
        ["docker", "run", "--rm", "lectern/debian-base:bookworm-arm64", "uname", "-m"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "aarch64"
