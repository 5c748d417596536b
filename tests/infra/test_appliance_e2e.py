"""End to end on lab hosts provisioned with the whole site (runs after test_provision).

pi (pyinfra) and server (Ansible) read the PC's library over SMB, serve it through the
TLS proxy with a certificate from the lab CA, back /data up, and keep serving from the
NAS replica when the PC goes away.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from labtools import run

from appliance import lab as lab_mod
from appliance.library_gen import run_calibredb

IP = {n.name: n.ip for n in lab_mod.NODES}
HOSTS = ["pi", "server"]


def on(host: str, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(*lab_mod.ssh_args(IP[host]), command, check=check)


_CA: dict[str, ssl.SSLContext] = {}


def tls(host: str) -> ssl.SSLContext:
    """A client context trusting the host's exported lab CA (and nothing else)."""
    if host not in _CA:
        pem = on(host, "sudo cat /etc/lectern/lab-ca.crt").stdout
        _CA[host] = ssl.create_default_context(cadata=pem)
    return _CA[host]


def books_on(host: str) -> dict[int, str]:
    """What users see: the listing through the host's TLS proxy (whichever slot serves)."""
    url = f"https://{IP[host]}/api/books?per_page=100&sort=added"
    with urllib.request.urlopen(url, timeout=5, context=tls(host)) as resp:
        return {b["id"]: b["title"] for b in json.load(resp)["items"]}


def library_read_ok(host: str) -> bool:
    """/api/health: the app's last read of the library succeeded (not a memory snapshot
    kept through a lock or an I/O error)."""
    url = f"https://{IP[host]}/api/health"
    try:
        with urllib.request.urlopen(url, timeout=5, context=tls(host)) as resp:
            return bool(json.load(resp)["calibre"])
    except urllib.error.HTTPError as error:  # 503 still carries the body
        return bool(json.load(error)["calibre"])


def serving_within(host: str, expected: dict[int, str], seconds: float) -> bool:
    """Within ``seconds``: the app lists exactly ``expected`` from a library it can read
    (short per-try timeouts)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if books_on(host) == expected and library_read_ok(host):
                return True
        except OSError:  # timed out or refused while the source is switching
            pass
        time.sleep(2)
    return False


def calibredb_books() -> dict[int, str]:
    proc = run_calibredb(
        ["list", "--for-machine", "--fields", "title", "--with-library", str(lab_mod.library_dir())]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {b["id"]: b["title"] for b in json.loads(proc.stdout)}


@pytest.mark.parametrize("host", HOSTS)
def test_app_lists_the_same_books_as_calibredb_on_pc(lab: Path, host: str) -> None:
    state = on(host, "cat /etc/lectern/library-source").stdout
    assert "mode=smb" in state and "transport=" in state  # the role says which path it took
    assert books_on(host) == calibredb_books()


@pytest.mark.parametrize("host", HOSTS)
def test_proxy_serves_https_with_a_lab_ca_certificate(lab: Path, host: str, tmp_path: Path) -> None:
    ca = tmp_path / "lab-ca.crt"
    ca.write_text(on(host, "sudo cat /etc/lectern/lab-ca.crt").stdout)
    out = run(
        "curl",
        "-sS",
        "--fail",
        "--cacert",
        str(ca),
        "-D",
        "-",
        "-o",
        "/dev/null",
        f"https://{IP[host]}/api/health",
    ).stdout.lower()
    assert out.startswith("http/") and " 200" in out.splitlines()[0]
    assert "strict-transport-security" in out and "x-content-type-options: nosniff" in out
    # Without the lab CA the certificate is not trusted: TLS is really verified above.
    bad = run("curl", "-sS", f"https://{IP[host]}/api/health", check=False)
    assert bad.returncode == 60, bad.stderr


@pytest.mark.parametrize("host", HOSTS)
def test_backup_exists_and_the_restore_drill_passes(lab: Path, host: str) -> None:
    snap = on(host, "sudo lectern-backup snapshot --tag lab-test").stdout.strip().splitlines()
    assert len(snap[-1]) == 64, snap
    listed = json.loads(on(host, "sudo lectern-backup list").stdout)
    assert any(snap[-1] in json.dumps(entry) for entry in listed)
    on(host, "sudo lectern-backup drill")


def test_fleet_status_reports_each_host(lab: Path) -> None:
    out = run(str(Path(lab_mod.REPO_ROOT) / ".venv" / "bin" / "appliance"), "status", "--json")
    rows = {r["host"]: r for r in json.loads(out.stdout)}
    assert set(rows) == {"pi", "server", "nas"}
    for host in HOSTS:
        r = rows[host]
        assert r["health"] == "healthy" and r["books"] == len(calibredb_books()), r
        assert r["tag"] == "edge" and r["digest"].startswith("sha256:"), r
        assert r["library"]["mode"] == "smb" and r["backup_age_s"] is not None, r
        assert r["profile"] == host and r["disk_free_gb"] > 0
    assert rows["nas"]["provisioned"] is False and rows["nas"]["health"] == "absent"


def test_pc_gone_the_app_keeps_serving_from_the_nas_replica(lab: Path) -> None:
    host = "server"
    expected = calibredb_books()
    on(host, "sudo systemctl start lectern-library-replicas.service")
    assert on(host, "readlink /srv/lectern/library").stdout.strip() == "sources/primary"
    subprocess.run(["docker", "stop", "-t", "1", "lectern-lab-pc"], check=True, capture_output=True)
    gone = time.monotonic()
    try:
        target = ""
        for _ in range(60):  # the health timer runs every 10 s in the lab
            target = on(host, "readlink /srv/lectern/library").stdout.strip()
            if target.startswith("sources/replica"):
                break
            time.sleep(2)
        assert target.startswith("sources/replica"), target
        # Serving from the replica: the listing AND a successful read (/api/health). Where
        # the time goes: the health timer (10 s) and two 15 s checks of the dead mount
        # before the switch, then the app's next read of the new link target.
        assert serving_within(host, expected, 120)
        print(f"PC gone -> serving from the replica after {time.monotonic() - gone:.0f} s")
    finally:
        subprocess.run(["docker", "start", "lectern-lab-pc"], check=True, capture_output=True)
    run(str(Path(lab_mod.REPO_ROOT) / ".venv" / "bin" / "appliance"), "lab", "up")
    for _ in range(60):
        if on(host, "readlink /srv/lectern/library").stdout.strip() == "sources/primary":
            break
        time.sleep(2)
    assert on(host, "readlink /srv/lectern/library").stdout.strip() == "sources/primary"
    assert serving_within(host, expected, 120)
