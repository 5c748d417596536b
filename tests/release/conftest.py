"""Fixtures for the on-host release tool, run against the real Docker engine.

A throwaway registry (Debian's docker-registry image) serves three releases of the real
app image: 1.0.0, 2.0.0 (same schema), 3.0.0 (schema 2) and `bad` (never answers).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pytest

from appliance.library_gen import build_library
from appliance.roles import role_defaults

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "rollback" / "lectern_release.py"
REGISTRY_PORT = 5070
REGISTRY = f"127.0.0.1:{REGISTRY_PORT}"
IMAGE = f"{REGISTRY}/lectern/app"
REGISTRY_NAME = "lectern-release-test-registry"
PROJECT = "lrtest"
SLOTS = {"blue": 18101, "green": 18102}

BACKUP_SCRIPT = """#!/bin/sh
# A plain tar snapshot tool with lectern-backup's interface (snapshot/restore).
set -eu
store=$(dirname "$0")/snapshots; mkdir -p "$store"
case "$1" in
  snapshot) id="snap-$(date +%s%N)"; tar -C "$DATA" -cf "$store/$id.tar" .; echo "$id" ;;
  restore) mkdir -p "$5"; tar -C "$5" -xf "$store/$3.tar" ;;
esac
"""


def sh(*args: str, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {proc.stderr[-2000:]}")
    return proc  # type: ignore[no-any-return]


def app_image() -> str:
    """The amd64 app image built by images/build.sh (built here if missing)."""
    record = REPO / ".cache" / "image" / "last-build.json"
    if record.exists():
        tag = json.loads(record.read_text())["platforms"].get("linux/amd64", {}).get("local_tag")
        if tag and sh("docker", "image", "inspect", tag, check=False).returncode == 0:
            return str(tag)
    sh(
        str(REPO / "images" / "build.sh"),
        "--no-push",
        env=dict(os.environ, PLATFORMS="linux/amd64"),
        cwd=REPO,
    )
    tag = json.loads(record.read_text())["platforms"]["linux/amd64"]["local_tag"]
    return str(tag)


def derive(base: str, tag: str, lines: str, workdir: Path) -> None:
    ctx = workdir / tag
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base}\n{lines}\n")
    sh(
        "docker",
        "build",
        "-q",
        "-t",
        f"{IMAGE}:{tag}",
        str(ctx),
        env=dict(os.environ, DOCKER_BUILDKIT="0"),
    )
    sh("docker", "push", f"{IMAGE}:{tag}")


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    sh("docker", "rm", "-f", REGISTRY_NAME, check=False)
    sh(
        "docker",
        "run",
        "-d",
        "--name",
        REGISTRY_NAME,
        "-p",
        f"{REGISTRY}:5000",
        "lectern/lab-registry:bookworm",
    )
    for _ in range(50):
        try:
            urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    work = tmp_path_factory.mktemp("images")
    base = app_image()
    derive(base, "1.0.0", "LABEL org.opencontainers.image.version=1.0.0", work)
    derive(base, "2.0.0", "LABEL org.opencontainers.image.version=2.0.0", work)
    derive(
        base,
        "3.0.0",
        "LABEL org.opencontainers.image.version=3.0.0 org.lectern.schema-version=2",
        work,
    )
    derive(
        base,
        "bad",
        "LABEL org.opencontainers.image.version=bad\n"
        'CMD ["python3", "-c", "import time; time.sleep(3600)"]',
        work,
    )
    yield IMAGE
    sh("docker", "rm", "-f", REGISTRY_NAME, check=False)


@dataclass
class Host:
    """One appliance host's release setup, on this machine's Docker engine."""

    root: Path
    data: Path
    config: Path

    def release(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, LECTERN_RELEASE_CONFIG=str(self.config), DATA=str(self.data))
        return sh("python3", str(TOOL), *args, check=check, env=env)

    def ledger(self) -> list[dict[str, str]]:
        return list(json.loads((self.root / "state" / "ledger.json").read_text()))

    def url(self, slot: str) -> str:
        return f"http://127.0.0.1:{SLOTS[slot]}"


def cleanup() -> None:
    names = sh("docker", "ps", "-aq", "--filter", f"name={PROJECT}-app-").stdout.split()
    if names:
        sh("docker", "rm", "-f", *names, check=False)


@pytest.fixture
def host(registry: str, tmp_path: Path, library: Path) -> Iterator[Host]:
    cleanup()
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 1500, 1500)
    template = (REPO / "compose" / "docker-compose.yml.j2").read_text()
    compose = jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined)
    (tmp_path / "docker-compose.yml").write_text(
        compose.from_string(template).render(
            role_defaults("appliance")
            | dict(
                lectern_appliance_image=registry,
                lectern_appliance_project=PROJECT,
                lectern_appliance_data_dir=str(data),
                lectern_appliance_library_path=str(library),
                lectern_appliance_healthcheck_start_period="5s",
                lectern_appliance_healthcheck_interval="2s",
            )
        )
    )
    backup = tmp_path / "backup"
    backup.write_text(BACKUP_SCRIPT)
    backup.chmod(0o755)
    config = tmp_path / "release.json"
    config.write_text(
        json.dumps(
            {
                "image": registry,
                "compose_file": str(tmp_path / "docker-compose.yml"),
                "project": PROJECT,
                "state_dir": str(tmp_path / "state"),
                "slots": SLOTS,
                "backup_command": str(backup),
                "data_dir": str(data),
                "health_timeout": 40,
                "drain_seconds": 0.5,
            }
        )
    )
    yield Host(tmp_path, data, config)
    cleanup()


@pytest.fixture(scope="session")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("library") / "lib"
    build_library(path, 6)
    for p in [path, *path.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o005 | (0o001 if p.is_dir() else 0))
    return path


def registry_down() -> None:
    sh("docker", "stop", REGISTRY_NAME)


def registry_up() -> None:
    sh("docker", "start", REGISTRY_NAME)
    time.sleep(1)


__all__ = ["SLOTS", "Host", "registry_down", "registry_up", "sh", "shutil"]
