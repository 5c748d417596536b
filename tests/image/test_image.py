"""The multi-arch, non-root, health-checked image (see images/)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from lectern_app import SCHEMA_GENERATION

from .conftest import (
    REGISTRY,
    REGISTRY_HOST,
    REPO,
    ROOT,
    docker,
    free_port,
    http_json,
    sh,
    wait_health,
)

LIST_TYPES = (
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
ACCEPT = ",".join(
    (
        *LIST_TYPES,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    )
)


def run_app(name: str, image: str, library: Path, *extra: str, platform: str | None = None) -> int:
    port = free_port()
    args = [
        "run",
        "-d",
        "--name",
        name,
        "--read-only",
        "--tmpfs",
        "/tmp",
        "-v",
        f"{library}:/library:ro",
        "-e",
        "CALIBRE_LIBRARY_PATH=/library",
        "-p",
        f"127.0.0.1:{port}:8000",
        *extra,
    ]
    if platform:
        args += ["--platform", platform]
    docker(*args, image)
    return port


def labels(image: str) -> dict[str, str]:
    return json.loads(docker("image", "inspect", "-f", "{{json .Config.Labels}}", image))  # type: ignore[no-any-return]


# ---------------------------------------------------------------- build
def test_both_architectures_build(build: dict[str, Any]) -> None:
    plats = build["platforms"]
    assert set(plats) == {"linux/amd64", "linux/arm64"}
    for plat, info in plats.items():
        arch = docker("image", "inspect", "-f", "{{.Os}}/{{.Architecture}}", info["local_tag"])
        assert arch == plat
        lab = labels(info["local_tag"])
        assert lab["org.opencontainers.image.version"] == build["version"]
        assert lab["org.opencontainers.image.revision"].startswith(build["revision"][:12])
        assert lab["org.opencontainers.image.created"] == build["created"]
        assert lab["org.opencontainers.image.source"]
        # lectern-release reads it to decide whether a rollback restores /data
        assert lab["org.lectern.schema-version"] == str(SCHEMA_GENERATION)
        assert info["digest"].startswith("sha256:")


def test_offline_build_uses_the_air_gapped_base(build: dict[str, Any]) -> None:
    # no public registry answers here: build.sh must have fallen back to images/base by itself
    public = sh("docker", "pull", "-q", "python:3.11-slim-bookworm", check=False, timeout=90)
    if public.returncode == 0:
        pytest.skip("a public registry answered: the public base was (correctly) preferred")
    for plat, info in build["platforms"].items():
        arch = plat.split("/")[1]
        assert info["base"] == f"lectern/debian-base:bookworm-{arch}"
        assert labels(info["local_tag"])["org.opencontainers.image.base.name"] == info["base"]
        assert f"{plat}: base lectern/debian-base:bookworm-{arch} (air-gapped" in build["_log"]


def test_final_image_is_small_and_has_no_build_tools(build: dict[str, Any]) -> None:
    tag = build["platforms"]["linux/amd64"]["local_tag"]
    out = docker(
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        tag,
        "-c",
        "for t in gcc cc make pip pip3 curl apt-get; do command -v $t || true; done;"
        " ls /usr/share/locale | wc -l; ls /usr/share/man | wc -l",
    )
    lines = out.splitlines()
    assert lines[-2:] == ["0", "0"], out
    tools = [x for x in lines[:-2] if x]
    assert not [t for t in tools if "gcc" in t or "pip" in t or "make" in t or t.endswith("/cc")], (
        tools
    )


# ---------------------------------------------------------------- registry
def test_registry_holds_one_manifest_list_with_both_platforms(build: dict[str, Any]) -> None:
    digests = set()
    for tag in build["tags"]:
        code, headers, body = http_json(f"http://{REGISTRY_HOST}/v2/{REPO}/manifests/{tag}", ACCEPT)
        assert code == 200, tag
        assert body["mediaType"] in LIST_TYPES
        plats = {
            f"{m['platform']['os']}/{m['platform']['architecture']}" for m in body["manifests"]
        }
        assert plats == {"linux/amd64", "linux/arm64"}
        digests.add(headers.get("Docker-Content-Digest") or headers.get("docker-content-digest"))
    assert digests == {build["digest"]}, "every tag must point at the same manifest list"
    assert {"edge", "sha-" + build["revision"][:12]} <= set(build["tags"]) or "stable" in build[
        "tags"
    ]
    major_minor = ".".join(build["version"].split(".")[:2])
    assert {build["version"], major_minor} <= set(build["tags"])


def test_pull_by_digest(build: dict[str, Any]) -> None:
    ref = f"{REGISTRY}@{build['digest']}"
    docker("rmi", ref, check=False)
    docker("pull", "-q", ref, timeout=300)
    assert docker("image", "inspect", "-f", "{{.Architecture}}", ref) == "amd64"


# ---------------------------------------------------------------- runtime
def test_arm64_image_answers_health_under_qemu(
    build: dict[str, Any], library: Path, new_name: Any
) -> None:
    tag = build["platforms"]["linux/arm64"]["local_tag"]
    name = new_name()
    port = run_app(name, tag, library, "-v", f"{name}-data:/data")
    assert docker("exec", name, "uname", "-m") == "aarch64"
    health = wait_health(f"http://127.0.0.1:{port}/api/health", timeout=240)
    assert health["status"] == "healthy", health
    docker("volume", "rm", "-f", f"{name}-data", check=False)


def test_runs_non_root_read_only_and_goes_healthy(
    build: dict[str, Any], library: Path, new_name: Any
) -> None:
    tag = build["platforms"]["linux/amd64"]["local_tag"]
    name = new_name()
    port = run_app(
        name,
        tag,
        library,
        "-v",
        f"{name}-data:/data",
        "--health-interval",
        "2s",
        "--health-start-period",
        "5s",
    )
    health = wait_health(f"http://127.0.0.1:{port}/api/health", timeout=60)
    assert health["status"] == "healthy" and health["database"] is True, health
    assert docker("exec", name, "id", "-u") == "1500"
    assert docker("exec", name, "id", "-un") == "lectern"
    assert json.loads(docker("inspect", "-f", "{{json .HostConfig.ReadonlyRootfs}}", name)) is True
    denied = sh("docker", "exec", name, "sh", "-c", "echo x > /opt/lectern/x", check=False)
    assert denied.returncode != 0
    deadline = time.monotonic() + 30
    while docker("inspect", "-f", "{{.State.Health.Status}}", name) != "healthy":
        assert time.monotonic() < deadline, "the image's HEALTHCHECK never reported healthy"
        time.sleep(1)
    docker("rm", "-f", name)
    docker("volume", "rm", "-f", f"{name}-data", check=False)


def test_data_survives_rm_and_a_newer_tag(
    build: dict[str, Any], library: Path, new_name: Any, tmp_path: Path
) -> None:
    tag = build["platforms"]["linux/amd64"]["local_tag"]
    volume = f"lectern-image-test-data-{int(time.time())}"
    first = new_name()
    port = run_app(first, tag, library, "-v", f"{volume}:/data")
    wait_health(f"http://127.0.0.1:{port}/api/health", timeout=60)
    docker(
        "exec",
        first,
        "sh",
        "-c",
        "mkdir -p /data/users && echo 'alice: favorites=3' > /data/users/alice",
    )
    docker("rm", "-f", first)
    # a "newer release": same app, new tag and image id
    newer = f"{REGISTRY}:0.0.0-newer-test"
    (tmp_path / "Dockerfile").write_text(
        f"FROM {tag}\nLABEL org.opencontainers.image.version=9.9.9\n"
    )
    sh(
        "docker",
        "build",
        "-q",
        "-t",
        newer,
        str(tmp_path),
        env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/local/bin:/usr/bin:/bin"},
    )
    second = new_name()
    port = run_app(second, newer, library, "-v", f"{volume}:/data")
    health = wait_health(f"http://127.0.0.1:{port}/api/health", timeout=60)
    assert health["database"] is True
    assert docker("exec", second, "cat", "/data/users/alice") == "alice: favorites=3"
    assert docker("exec", second, "stat", "-c", "%u", "/data/users/alice") == "1500"
    docker("rm", "-f", second)
    docker("volume", "rm", "-f", volume, check=False)
    docker("rmi", newer, check=False)


def test_sigterm_stops_gracefully_within_the_stop_timeout(
    build: dict[str, Any], library: Path, new_name: Any
) -> None:
    tag = build["platforms"]["linux/amd64"]["local_tag"]
    name = new_name()
    port = run_app(name, tag, library, "--stop-timeout", "30")
    wait_health(f"http://127.0.0.1:{port}/api/health", timeout=60)
    t0 = time.monotonic()
    docker("stop", name, timeout=60)
    elapsed = time.monotonic() - t0
    state = json.loads(docker("inspect", "-f", "{{json .State}}", name))
    assert state["ExitCode"] == 0, state  # 137 would mean SIGKILL after the timeout
    assert not state["OOMKilled"]
    assert elapsed < 10, f"stop took {elapsed:.1f} s"


def test_layers_are_reproducible(build: dict[str, Any]) -> None:
    """The same inputs build the same layers: rebuild amd64 without any cache and compare."""
    tag = build["platforms"]["linux/amd64"]["local_tag"]
    ctx = ROOT / ".cache" / "image-test" / "context"
    lab = labels(tag)
    again = "lectern/app:reproducibility-check"
    args = [
        f"--build-arg={k}={v}"
        for k, v in {
            "BASE_IMAGE": build["platforms"]["linux/amd64"]["base"],
            "VERSION": lab["org.opencontainers.image.version"],
            "REVISION": lab["org.opencontainers.image.revision"],
            "CREATED": lab["org.opencontainers.image.created"],
            "SOURCE": lab["org.opencontainers.image.source"],
        }.items()
    ]
    sh(
        "docker",
        "build",
        "--no-cache",
        "--platform",
        "linux/amd64",
        *args,
        "-t",
        again,
        str(ctx),
        env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/local/bin:/usr/bin:/bin"},
        timeout=1200,
    )
    try:
        a = docker("image", "inspect", "-f", "{{json .RootFS.Layers}}", tag)
        b = docker("image", "inspect", "-f", "{{json .RootFS.Layers}}", again)
        assert json.loads(a) == json.loads(b)
    finally:
        docker("rmi", again, check=False)
