"""compose/ and watchtower/: the templates render with plain Jinja2 and Debian's docker-compose
1.29 accepts them; the minimal stack really starts the image pinned by digest and goes healthy."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from appliance.roles import role_defaults

from .conftest import REGISTRY, ROOT, docker, free_port, wait_health

STACK = ROOT / "compose" / "docker-compose.yml.j2"
OVERLAY = ROOT / "watchtower" / "docker-compose.watchtower.yml.j2"
COMPOSE = shutil.which("docker-compose")
pytestmark = pytest.mark.skipif(
    COMPOSE is None, reason="docker-compose (Debian package) is not installed"
)

DIGEST = "sha256:" + "ab" * 32
VARIANTS: dict[str, dict[str, Any]] = {
    "minimal": {
        "lectern_appliance_image": "127.0.0.1:5000/lectern/app",
        "lectern_appliance_image_digest": DIGEST,
    },
    "everything": {
        "lectern_appliance_image": "127.0.0.1:5000/lectern/app",
        "lectern_appliance_image_digest": DIGEST,
        "lectern_appliance_redis_enabled": True,
        "lectern_appliance_postgres_enabled": True,
        "lectern_appliance_postgres_password": "s3cret",
        "lectern_appliance_watchtower_enabled": True,
        "lectern_appliance_watchtower_monitor_only": True,
        "lectern_appliance_env": {"SITE_TITLE": 'Our <books> & "more"', "PAGE_SIZE": 50},
    },
}


def render(template: Path, **variables: Any) -> str:
    """The template with roles/appliance's defaults (its one documented source) + overrides."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(template.read_text()).render(
        **{**role_defaults("appliance"), **variables}
    )


def compose(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMPOSE or "docker-compose", *args],
        cwd=cwd,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_templates_render_and_validate(variant: str, tmp_path: Path) -> None:
    v = VARIANTS[variant]
    (tmp_path / "docker-compose.yml").write_text(render(STACK, **v))
    files = ["-f", "docker-compose.yml"]
    if v.get("lectern_appliance_watchtower_enabled"):
        (tmp_path / "docker-compose.watchtower.yml").write_text(render(OVERLAY, **v))
        files += ["-f", "docker-compose.watchtower.yml"]
    p = compose(*files, "config", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    cfg = yaml.safe_load(p.stdout)
    app = cfg["services"]["app"]
    assert app["read_only"] is True and app["user"] == "1500:1500"
    assert any(t.startswith("/tmp") for t in app["tmpfs"])
    assert app["mem_limit"] and app["cpus"] and app["restart"] == "unless-stopped"
    assert app["logging"]["options"]["max-size"] == "10m"
    assert app["healthcheck"]["test"][0] == "CMD"
    assert app["labels"]["org.lectern.app"] == "lectern"
    if variant == "minimal":
        assert app["image"].endswith("@" + DIGEST)  # pinned by digest
        assert set(cfg["services"]) == {"app"}
        assert app["labels"]["com.centurylinklabs.watchtower.enable"] == "false"
    else:
        assert set(cfg["services"]) == {"app", "redis", "postgres", "watchtower"}
        assert app["environment"]["SITE_TITLE"] == 'Our <books> & "more"'
        assert app["environment"]["REDIS_URL"].startswith("redis://redis:")
        assert app["environment"]["DATABASE_URL"].startswith("postgresql://lectern:s3cret@postgres")
        wt = cfg["services"]["watchtower"]
        assert "--label-enable" in wt["command"] and "--monitor-only" in wt["command"]
        assert wt["image"].startswith("nickfedor/watchtower")
        # only the app opts in; the updater never touches redis, postgres or itself
        enabled = {
            n
            for n, s in cfg["services"].items()
            if s["labels"].get("com.centurylinklabs.watchtower.enable") == "true"
        }
        assert enabled == {"app"}


def test_minimal_stack_starts_pinned_by_digest(
    build: dict[str, Any], library: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 1500, 1500)
    port = free_port()
    project = f"lecterntest{int(time.time()) % 100000}"
    repo, digest = REGISTRY, build["digest"]
    (tmp_path / "docker-compose.yml").write_text(
        render(
            STACK,
            lectern_appliance_image=repo,
            lectern_appliance_image_digest=digest,
            lectern_appliance_project=project,
            lectern_appliance_bind_address="127.0.0.1",
            lectern_appliance_slot_ports={"blue": port, "green": port + 1},
            lectern_appliance_data_dir=str(data),
            lectern_appliance_library_path=str(library),
            lectern_appliance_healthcheck_interval="2s",
            lectern_appliance_healthcheck_start_period="5s",
        )
    )
    try:
        p = compose("-p", project, "up", "-d", cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        health = wait_health(f"http://127.0.0.1:{port}/api/health", timeout=90)
        assert health["status"] == "healthy"
        name = f"{project}-app"
        assert docker("inspect", "-f", "{{.Config.Image}}", name) == f"{repo}@{digest}"
        deadline = time.monotonic() + 60
        while docker("inspect", "-f", "{{.State.Health.Status}}", name) != "healthy":
            assert time.monotonic() < deadline
            time.sleep(1)
        p = compose("-p", project, "stop", cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        assert docker("inspect", "-f", "{{.State.ExitCode}}", name) == "0"
    finally:
        compose("-p", project, "down", "-v", cwd=tmp_path)
