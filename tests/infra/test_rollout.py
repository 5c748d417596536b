"""Fleet releases on the lab (runs after test_appliance_e2e: pi and server serve edge).

Real hosts, the real registry, the real proxy: `appliance rollout` and `appliance
rollback` drive each host's own lectern-release over SSH while clients load every host
through its TLS proxy (a new TLS connection per request). Releases are derived from the
edge image the lab serves: `rollout-good` (a new version label) and `rollout-bad` (its
app never answers: the health gate must refuse it).
"""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labtools import BIN, run

from appliance import lab as lab_mod

IP = {n.name: n.ip for n in lab_mod.NODES}
HOSTS = ["pi", "server"]
REGISTRY = "127.0.0.1:5000/lectern/app"
GOOD, BAD = "rollout-good", "rollout-bad"


def on(host: str, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(*lab_mod.ssh_args(IP[host]), command, check=check)


def status(host: str) -> dict[str, Any]:
    out = on(host, "sudo lectern-release status --json").stdout
    result: dict[str, Any] = json.loads(out)
    return result


def appliance(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return run(str(BIN / "appliance"), *args, "--inventory", "inventories/lab", check=check)


def outcomes(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    start = proc.stdout.index("[")
    return {o["host"]: o for o in json.loads(proc.stdout[start:])}


class Load:
    """Clients on this machine: GET a listing through each host's proxy, count failures."""

    def __init__(self, hosts: list[str], threads_per_host: int = 6) -> None:
        self.stop = threading.Event()
        self.ok = dict.fromkeys(hosts, 0)
        self.failures: dict[str, list[str]] = {h: [] for h in hosts}
        self.lock = threading.Lock()
        self.contexts = {
            h: ssl.create_default_context(cadata=on(h, "sudo cat /etc/lectern/lab-ca.crt").stdout)
            for h in hosts
        }
        self.threads = [
            threading.Thread(target=self.client, args=(h,), daemon=True)
            for h in hosts
            for _ in range(threads_per_host)
        ]
        self.started = 0.0
        self.seconds = 0.0

    def client(self, host: str) -> None:
        url = f"https://{IP[host]}/api/books?per_page=5"
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=10, context=self.contexts[host]) as r:
                    r.read()
                    good = r.status == 200
                    reason = f"HTTP {r.status}"
            except Exception as exc:  # every failure a client would see counts
                good, reason = False, repr(exc)[:160]
            with self.lock:
                if good:
                    self.ok[host] += 1
                else:
                    self.failures[host].append(reason)

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()
        self.seconds = time.monotonic() - self.started

    def rate(self, host: str) -> float:
        return self.ok[host] / self.seconds


@pytest.fixture(scope="module")
def releases(lab: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """rollout-good and rollout-bad in the lab registry, derived from edge."""
    work = tmp_path_factory.mktemp("releases")
    run("docker", "pull", "-q", f"{REGISTRY}:edge")
    stamp = str(int(time.time()))
    for tag, lines in (
        (GOOD, f"LABEL org.opencontainers.image.version={GOOD}-{stamp}"),
        (
            BAD,
            f"LABEL org.opencontainers.image.version={BAD}-{stamp}\n"
            'CMD ["python3", "-c", "import time; time.sleep(3600)"]',
        ),
    ):
        ctx = work / tag
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM {REGISTRY}:edge\n{lines}\n")
        run("docker", "build", "-q", "-t", f"{REGISTRY}:{tag}", str(ctx))
        run("docker", "push", f"{REGISTRY}:{tag}")
    for host in HOSTS:
        assert status(host)["healthy"], f"{host} does not serve a healthy release"
    yield


def test_good_release_rolls_out_under_load_without_a_failed_request(releases: None) -> None:
    with Load(HOSTS) as load:
        time.sleep(3)
        proc = appliance("rollout", "--tag", GOOD, "--limit", ",".join(HOSTS), "--json")
        time.sleep(3)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = outcomes(proc)
    for host in HOSTS:
        assert result[host]["state"] == "deployed", result[host]
        active = status(host)["active"]
        assert active["tag"] == GOOD
        assert load.failures[host] == [], (host, load.failures[host][:5])
        assert load.ok[host] > 0
    print("rollout under load:", {h: f"{load.rate(h):.0f} req/s" for h in HOSTS})
    assert [result[h]["wave"] for h in HOSTS] == [0, 1]  # the canary went first
    again = appliance("rollout", "--tag", GOOD, "--limit", ",".join(HOSTS), "--json")
    assert {o["state"] for o in outcomes(again).values()} == {"unchanged"}


def test_bad_release_fails_the_canary_and_halts(releases: None) -> None:
    before = {h: status(h)["active"] for h in HOSTS}
    with Load(HOSTS) as load:
        proc = appliance("rollout", "--tag", BAD, "--limit", ",".join(HOSTS), "--json")
    assert proc.returncode == 1
    result = outcomes(proc)
    assert result["pi"]["state"] == "failed" and "not healthy" in result["pi"]["detail"]
    assert result["server"]["state"] == "skipped"  # never touched
    for host in HOSTS:
        assert status(host)["active"] == before[host]
        assert status(host)["healthy"]
        assert load.failures[host] == [], (host, load.failures[host][:5])
    ledger = json.loads(on("pi", "sudo lectern-release history --json").stdout)
    assert ledger[-1]["tag"] == BAD and ledger[-1]["outcome"] == "failed"
    assert "not healthy" in ledger[-1]["reason"]
    server_ledger = json.loads(on("server", "sudo lectern-release history --json").stdout)
    assert all(e["tag"] != BAD for e in server_ledger)


def test_an_unreachable_host_counts_against_max_fail(releases: None) -> None:
    run("docker", "stop", "-t", "2", "lectern-lab-pi")
    try:
        halted = appliance(
            "rollout",
            "--tag",
            "edge",
            "--limit",
            "pi,server",
            "--canary",
            "0",
            "--batch",
            "1",
            "--json",
        )
        result = outcomes(halted)
        assert halted.returncode == 1
        assert result["pi"]["state"] == "failed" and "unreachable" in result["pi"]["detail"]
        assert result["server"]["state"] == "skipped" and status("server")["active"]["tag"] == GOOD
        tolerated = appliance(
            "rollout",
            "--tag",
            "edge",
            "--limit",
            "pi,server",
            "--canary",
            "0",
            "--batch",
            "1",
            "--max-fail",
            "1",
            "--json",
        )
        result = outcomes(tolerated)
        assert tolerated.returncode == 1  # a failed host is still reported
        assert result["server"]["state"] == "deployed"
        assert status("server")["active"]["tag"] == "edge"
    finally:
        run("docker", "start", "lectern-lab-pi")
    # A rebooted host serves its release of record again (restart policy + converge unit)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        probe = on("pi", "sudo lectern-release status --json", check=False)
        if probe.returncode == 0 and json.loads(probe.stdout)["healthy"]:
            break
        time.sleep(3)
    assert status("pi")["active"]["tag"] == GOOD and status("pi")["healthy"]


def test_rollback_with_the_registry_stopped_is_fast(releases: None) -> None:
    assert status("pi")["active"]["tag"] == GOOD
    run("docker", "stop", "-t", "2", "lectern-lab-registry")
    try:
        start = time.monotonic()
        proc = appliance("rollback", "pi", "--json")
        took = time.monotonic() - start
    finally:
        run("docker", "start", "lectern-lab-registry")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert outcomes(proc)["pi"]["state"] == "rolled-back"
    active = status("pi")
    assert active["healthy"] and active["active"]["tag"] == "edge"
    print(f"rollback with the registry stopped: {took:.1f} s")
    assert took <= 15, f"rollback took {took:.1f} s"
