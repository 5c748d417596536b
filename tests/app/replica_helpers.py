"""Real processes for the storage/cache tests: redis-server and uvicorn app replicas."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def redis_server(workdir: Path, port: int | None = None) -> Iterator[str]:
    """A throwaway redis-server on a loopback port (Debian package redis-server)."""
    exe = shutil.which("redis-server")
    if exe is None:  # pragma: no cover
        pytest.fail("redis-server is required: run scripts/ensure-host-packages.sh")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            time.sleep(0.02)
    else:  # pragma: no cover
        proc.kill()
        pytest.fail("redis-server did not start")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Replica:
    def __init__(self, proc: subprocess.Popen[bytes], base: str) -> None:
        self.proc = proc
        self.base = base
        self.client = httpx.Client(base_url=base, timeout=5)

    def stop(self) -> str:
        self.client.close()
        self.proc.terminate()
        _out, err = self.proc.communicate(timeout=10)
        return err.decode(errors="replace")


def start_replicas(*envs: dict[str, str]) -> list[Replica]:
    """`python -m lectern_app` (uvicorn) processes on free loopback ports, started in
    parallel; returns once every one answers /api/health."""
    started: list[tuple[subprocess.Popen[bytes], str]] = []
    for extra in envs:
        port = free_port()
        env = dict(os.environ)
        env.update(HOST="127.0.0.1", PORT=str(port), LOG_LEVEL="warning")
        env.update(extra)
        proc = subprocess.Popen(
            [sys.executable, "-m", "lectern_app"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        started.append((proc, f"http://127.0.0.1:{port}"))
    replicas: list[Replica] = []
    deadline = time.monotonic() + 150  # a loaded 2-CPU box needs ~20-60 s per start
    for proc, base in started:
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                for p, _b in started:
                    p.kill()
                pytest.fail(f"replica exited: {err}")
            try:
                if httpx.get(base + "/api/health", timeout=1).status_code == 200:
                    replicas.append(Replica(proc, base))
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:  # pragma: no cover
                for p, _b in started:
                    p.kill()
                pytest.fail("replica did not become healthy")
            time.sleep(0.05)
    return replicas


def metric(text: str, name: str) -> float:
    """The value of one sample line `name{labels} value` in Prometheus text output."""
    for line in text.splitlines():
        if line.rsplit(" ", 1)[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return 0.0
