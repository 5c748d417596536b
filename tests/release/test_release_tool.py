"""lectern-release against the real Docker engine and the real app image.

No proxy here (slot ports are probed directly); the lab test adds the proxy and
client load. Each test starts from an empty host (fresh state dir, no containers).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request

from conftest import SLOTS, TOOL, Host, registry_down, registry_up, sh


def serving(host: Host) -> dict[str, str]:
    status = json.loads(host.release("status", "--json").stdout)
    assert status["healthy"], status
    return dict(status["active"])


def version(host: Host, slot: str) -> str:
    with urllib.request.urlopen(f"{host.url(slot)}/api/health", timeout=5) as resp:
        assert resp.status == 200
    label = sh(
        "docker",
        "inspect",
        "-f",
        '{{ index .Config.Labels "org.opencontainers.image.version" }}',
        f"lrtest-app-{slot}",
    ).stdout.strip()
    return label


def running_slots() -> list[str]:
    out = sh("docker", "ps", "--filter", "name=lrtest-app-", "--format", "{{.Names}}").stdout
    return sorted(n.rsplit("-", 1)[1] for n in out.split())


def test_deploy_then_update_swaps_slots_and_records(host: Host) -> None:
    host.release("deploy", "1.0.0")
    first = serving(host)
    assert first["tag"] == "1.0.0" and running_slots() == [first["slot"]]
    host.release("deploy", "2.0.0")
    second = serving(host)
    assert second["tag"] == "2.0.0" and second["slot"] != first["slot"]
    assert running_slots() == [second["slot"]]  # the old slot was drained and stopped
    assert version(host, second["slot"]) == "2.0.0"
    ledger = host.ledger()
    assert [(e["tag"], e["outcome"]) for e in ledger] == [("1.0.0", "ok"), ("2.0.0", "ok")]
    assert all(e["digest"].startswith("sha256:") and e["snapshot"] for e in ledger[1:])
    again = host.release("deploy", "2.0.0")
    assert "already serving" in again.stderr


def test_bad_release_is_refused_and_the_old_keeps_serving(host: Host) -> None:
    host.release("deploy", "1.0.0")
    before = serving(host)
    bad = host.release("deploy", "bad", check=False)
    assert bad.returncode == 1
    assert "keeps serving" in bad.stderr and "not healthy" in bad.stderr
    assert serving(host) == before and running_slots() == [before["slot"]]
    last = host.ledger()[-1]
    assert last["tag"] == "bad" and last["outcome"] == "failed" and "not healthy" in last["reason"]


def test_rollback_works_with_the_registry_gone(host: Host) -> None:
    host.release("deploy", "1.0.0")
    host.release("deploy", "2.0.0")
    registry_down()
    try:
        start = time.monotonic()
        out = host.release("rollback")
        took = time.monotonic() - start
    finally:
        registry_up()
    assert "rolled back to 1.0.0" in out.stdout
    assert serving(host)["tag"] == "1.0.0"
    assert "kept" in out.stderr  # same schema: user data written since the update is kept
    assert took < 15, f"rollback took {took:.1f} s"


def test_schema_change_rollback_restores_the_pre_update_snapshot(host: Host) -> None:
    host.release("deploy", "2.0.0")
    (host.data / "before.txt").write_text("written before the update\n")
    host.release("deploy", "3.0.0")  # schema 2: takes a pre-update snapshot
    (host.data / "after.txt").write_text("written by the new schema\n")
    out = host.release("rollback")
    assert "restored /data from the pre-update snapshot" in out.stdout
    assert "restored /data from the pre-update snapshot" in host.ledger()[-1]["reason"]
    assert (host.data / "before.txt").read_text() == "written before the update\n"
    assert not (host.data / "after.txt").exists()
    assert serving(host)["tag"] == "2.0.0"


def test_rollback_with_nothing_earlier_is_a_clear_error(host: Host) -> None:
    host.release("deploy", "1.0.0")
    out = host.release("rollback", check=False)
    assert out.returncode == 1 and "no earlier successful release" in out.stderr
    assert serving(host)["tag"] == "1.0.0"


def test_kill_9_mid_swap_converges_to_one_healthy_release(host: Host) -> None:
    host.release("deploy", "1.0.0")
    before = serving(host)
    env = dict(os.environ, LECTERN_RELEASE_CONFIG=str(host.config), DATA=str(host.data))
    proc = subprocess.Popen(
        ["python3", str(TOOL), "deploy", "bad"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    journal = host.root / "state" / "journal.json"
    for _ in range(200):  # kill once the new slot is being started/probed
        if journal.exists() and len(running_slots()) == 2:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert journal.exists()
    out = host.release("converge")
    assert "interrupted deploy of bad: interrupted" in out.stdout
    assert running_slots() == [before["slot"]] and serving(host) == before
    assert not journal.exists()
    assert host.ledger()[-1]["outcome"] == "interrupted"
    assert "nothing to do" in host.release("converge").stdout


def test_dry_run_and_a_changed_compose_file_redeploy_gated(host: Host) -> None:
    host.release("deploy", "1.0.0")
    before = serving(host)
    assert host.release("deploy", "--dry-run", "1.0.0").stdout.startswith("unchanged")
    assert host.release("deploy", "--dry-run", "2.0.0").stdout.startswith("would deploy")
    assert host.release("deploy", "1.0.0").stdout.startswith("unchanged")
    compose = host.root / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("LOG_LEVEL: ", "LOG_LEVEL: debug #", 1))
    plan = host.release("deploy", "--dry-run", "1.0.0").stdout
    assert plan.startswith("would deploy"), plan
    assert serving(host) == before  # a dry run changes nothing
    assert host.release("deploy", "1.0.0").stdout.startswith("deployed")
    after = serving(host)
    assert after["digest"] == before["digest"] and after["slot"] != before["slot"]
    env = sh("docker", "inspect", "-f", "{{json .Config.Env}}", f"lrtest-app-{after['slot']}")
    assert "LOG_LEVEL=debug" in env.stdout
    assert running_slots() == [after["slot"]]


def test_agent_deploys_the_channel_and_notifies_on_failure(host: Host) -> None:
    host.release("deploy", "1.0.0")
    note = host.root / "notified.txt"
    notify = f'echo "$LECTERN_CHANNEL: $LECTERN_UPDATE_REASON" > {note}'
    failed = host.release("agent", "--channel", "bad", "--notify", notify, check=False)
    assert failed.returncode == 1
    assert serving(host)["tag"] == "1.0.0"
    assert note.read_text().startswith("bad: deploy of bad failed")
    out = host.release("agent", "--channel", "2.0.0", "--notify", notify)
    assert out.stdout.startswith("deployed 2.0.0") and serving(host)["tag"] == "2.0.0"
    assert host.release("agent", "--channel", "2.0.0").stdout.startswith("unchanged")


# lectern-proxy-switch's interface (--show, HOST:PORT), keeping the target in a file
FAKE_PROXY_SWITCH = """#!/bin/sh
f=$(dirname "$0")/upstream
if [ "$1" = --show ]; then cat "$f"; else echo "$1" >"$f"; fi
"""


def test_converge_points_a_new_proxy_upstream_at_the_serving_slot(host: Host) -> None:
    """A proxy whose upstream file was made anew (an engine switch: the role writes the
    blue slot) while green serves: the dry run says so, converge points it at green."""
    switch = host.root / "proxy-switch"
    switch.write_text(FAKE_PROXY_SWITCH)
    switch.chmod(0o755)
    config = json.loads(host.config.read_text())
    host.config.write_text(json.dumps(config | {"proxy_switch": str(switch)}))
    host.release("deploy", "1.0.0")
    host.release("deploy", "2.0.0")
    slot = serving(host)["slot"]
    upstream = host.root / "upstream"
    assert upstream.read_text().split() == [f"127.0.0.1:{SLOTS[slot]}"]
    assert "nothing to do" in host.release("converge").stdout
    other = next(s for s in SLOTS if s != slot)
    upstream.write_text(f"127.0.0.1:{SLOTS[other]}\n")
    plan = host.release("deploy", "--dry-run", "2.0.0").stdout
    assert plan.startswith(f"would point the proxy at slot {slot}"), plan
    assert f"proxy pointed at slot {slot}" in host.release("converge").stdout
    assert upstream.read_text().split() == [f"127.0.0.1:{SLOTS[slot]}"]
    assert host.release("deploy", "--dry-run", "2.0.0").stdout.startswith("unchanged")
    assert serving(host)["slot"] == slot and running_slots() == [slot]
