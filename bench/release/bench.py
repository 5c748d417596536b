"""Release benchmark on the lab: rollout time 1 host vs 3, failed requests per update
(good and bad) under client load through each host's TLS proxy, rollback time with the
registry stopped. Needs provisioned lab hosts (bench/release/run.sh provisions them).

Prints a Markdown table; one run, so the ratios compare like with like.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from appliance import lab as lab_mod
from appliance.labload import Load

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
IP = {n.name: n.ip for n in lab_mod.NODES}
REGISTRY = "127.0.0.1:5000/lectern/app"
LOAD_RATE = 60  # requests/s offered to each host (issue 7 asks for >= 50)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return proc


def on(host: str, command: str) -> str:
    return sh(*lab_mod.ssh_args(IP[host]), command).stdout


def appliance(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.monotonic()
    proc = sh(str(BIN / "appliance"), *args, "--inventory", "inventories/lab", check=False)
    return time.monotonic() - start, proc


def load(hosts: list[str]) -> Load:
    """Keep-alive clients through each host's TLS proxy, LOAD_RATE requests/s per host."""
    ca = {h: on(h, "sudo cat /etc/lectern/lab-ca.crt") for h in hosts}
    return Load({h: (IP[h], ca[h]) for h in hosts}, rate=LOAD_RATE)


def failed_of_total(clients: Load) -> str:
    failed = sum(len(h.failures) for h in clients.hosts.values())
    total = sum(h.total for h in clients.hosts.values())
    rates = ", ".join(f"{n} {clients.rate(n):.0f}" for n in clients.hosts)
    return f"{failed}/{total} (req/s per host: {rates})"


def derive(tag: str, lines: str, work: Path) -> None:
    ctx = work / tag
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(f"FROM {REGISTRY}:edge\n{lines}\n")
    sh("docker", "build", "-q", "-t", f"{REGISTRY}:{tag}", str(ctx))
    sh("docker", "push", f"{REGISTRY}:{tag}")


def main() -> None:
    hosts = ["pi", "server", "nas"]
    work = REPO / ".cache" / "bench-release"
    sh("docker", "pull", "-q", f"{REGISTRY}:edge")
    stamp = str(int(time.time()))
    for n in ("a", "b", "c"):
        derive(f"bench-{n}", f"LABEL org.opencontainers.image.version=bench-{n}-{stamp}", work)
    derive("bench-bad", 'CMD ["python3", "-c", "import time; time.sleep(3600)"]', work)
    rows = []
    _, p = appliance("rollout", "--tag", "bench-a", "--limit", "pi")  # warm: pulls
    assert p.returncode == 0, p.stderr
    _, p = appliance(
        "rollout",
        "--tag",
        "bench-a",
        "--limit",
        ",".join(hosts),
        "--canary",
        "0",
        "--batch",
        "100%",
    )
    assert p.returncode == 0, p.stderr
    three_again, p = appliance(
        "rollout",
        "--tag",
        "bench-b",
        "--limit",
        ",".join(hosts),
        "--canary",
        "0",
        "--batch",
        "100%",
    )
    assert p.returncode == 0, p.stderr
    one_again, p = appliance("rollout", "--tag", "bench-c", "--limit", "pi")
    assert p.returncode == 0, p.stderr
    rows.append(("rollout, 1 host (pi)", f"{one_again:.1f} s"))
    rows.append(("rollout, 3 hosts in one batch", f"{three_again:.1f} s"))
    rows.append(("ratio 3 hosts / 1 host", f"{three_again / one_again:.2f}"))
    with load(hosts) as clients:
        good, p = appliance("rollout", "--tag", "bench-a", "--limit", ",".join(hosts))
    assert p.returncode == 0, p.stderr
    rows.append(
        (
            "good update under load (canary + batches), failed/total requests",
            f"{failed_of_total(clients)}, {good:.1f} s",
        )
    )
    with load(hosts) as clients:
        bad, p = appliance("rollout", "--tag", "bench-bad", "--limit", ",".join(hosts))
    assert p.returncode == 1, p.stdout
    rows.append(
        (
            "bad update under load (halts at the canary), failed/total requests",
            f"{failed_of_total(clients)}, {bad:.1f} s to refuse",
        )
    )
    sh("docker", "stop", "-t", "2", "lectern-lab-registry")
    try:
        took, p = appliance("rollback", "pi")
    finally:
        sh("docker", "start", "lectern-lab-registry")
    assert p.returncode == 0, p.stderr
    rows.append(("rollback of pi, registry stopped", f"{took:.1f} s"))
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print(json.dumps(dict(rows)), file=sys.stderr)


if __name__ == "__main__":
    main()
