"""Release benchmark on the lab: rollout time 1 host vs 3, failed requests per update
(good and bad) under client load through each host's TLS proxy, rollback time with the
registry stopped. Needs provisioned lab hosts (bench/release/run.sh provisions them).

Prints a Markdown table; one run, so the ratios compare like with like.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from appliance import lab as lab_mod

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
IP = {n.name: n.ip for n in lab_mod.NODES}
REGISTRY = "127.0.0.1:5000/lectern/app"


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


class Load:
    def __init__(self, hosts: list[str], threads: int = 4) -> None:
        self.stop = threading.Event()
        self.ok = 0
        self.failed = 0
        self.lock = threading.Lock()
        self.ctx = {
            h: ssl.create_default_context(cadata=on(h, "sudo cat /etc/lectern/lab-ca.crt"))
            for h in hosts
        }
        self.threads = [
            threading.Thread(target=self.loop, args=(h,), daemon=True)
            for h in hosts
            for _ in range(threads)
        ]

    def loop(self, host: str) -> None:
        url = f"https://{IP[host]}/api/books?per_page=5"
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=10, context=self.ctx[host]) as r:
                    r.read()
                    good = r.status == 200
            except Exception:
                good = False
            with self.lock:
                self.ok += good
                self.failed += not good

    def __enter__(self) -> Load:
        self.start = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()
        self.seconds = time.monotonic() - self.start


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
    with Load(hosts) as load:
        good, p = appliance("rollout", "--tag", "bench-a", "--limit", ",".join(hosts))
    assert p.returncode == 0, p.stderr
    rows.append(
        (
            "good update under load (canary + batch), failed/total requests",
            f"{load.failed}/{load.ok + load.failed}"
            f" ({(load.ok + load.failed) / load.seconds:.0f} req/s, {good:.1f} s)",
        )
    )
    with Load(hosts) as load:
        bad, p = appliance("rollout", "--tag", "bench-bad", "--limit", ",".join(hosts))
    assert p.returncode == 1, p.stdout
    rows.append(
        (
            "bad update under load (halts at the canary), failed/total requests",
            f"{load.failed}/{load.ok + load.failed} ({bad:.1f} s to refuse)",
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
