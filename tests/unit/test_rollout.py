"""Rollout ordering and halting (appliance/rollout.py); the lab test runs it for real.

`on_host` is replaced by a function answering as a host's lectern-release would, so the
wave logic is checked on fleets of any size without SSH.
"""

from __future__ import annotations

import subprocess
import threading

import pytest

from appliance import rollout
from appliance.inventory import Host


def fleet(n: int) -> list[Host]:
    return [Host(f"h{i}") for i in range(n)]


@pytest.mark.parametrize(
    ("batch", "total", "size"),
    [("25%", 8, 2), ("25%", 3, 1), ("100%", 5, 5), ("3", 10, 3), ("30%", 7, 3)],
)
def test_batch_size(batch: str, total: int, size: int) -> None:
    assert rollout.batch_size(batch, total) == size


@pytest.mark.parametrize("batch", ["0", "-1", "0%", "150%", "half", ""])
def test_bad_batch_is_a_clear_error(batch: str) -> None:
    with pytest.raises(rollout.RolloutError, match="--batch"):
        rollout.batch_size(batch, 4)


def test_waves_canary_first_then_batches_in_inventory_order() -> None:
    plan = rollout.waves(fleet(10), canary=1, batch="25%")
    assert [[h.name for h in w] for w in plan] == [
        ["h0"],
        ["h1", "h2", "h3"],
        ["h4", "h5", "h6"],
        ["h7", "h8", "h9"],
    ]
    assert [len(w) for w in rollout.waves(fleet(3), canary=0, batch="100%")] == [3]


def answering(failing: set[str], seen: list[str]):  # type: ignore[no-untyped-def]
    lock = threading.Lock()

    def on_host(
        host: Host, args: list[str], timeout: float = 0
    ) -> subprocess.CompletedProcess[str]:
        with lock:
            seen.append(host.name)
        if host.name in failing:
            return subprocess.CompletedProcess(
                args, 1, "", "lectern-release: error: deploy of 2.0 failed: not healthy\n"
            )
        return subprocess.CompletedProcess(args, 0, "deployed 2.0 sha256:ab in slot green\n", "")

    return on_host


def test_a_failed_canary_halts_and_leaves_the_rest_untouched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []
    monkeypatch.setattr(rollout, "on_host", answering({"h0"}, seen))
    out = rollout.execute(fleet(4), ["deploy", "2.0"], canary=1, batch="50%", max_fail=0)
    assert seen == ["h0"]
    assert [o.state for o in out] == ["failed", "skipped", "skipped", "skipped"]
    assert out[0].detail == "deploy of 2.0 failed: not healthy"
    assert "untouched" in out[1].detail


def test_max_fail_lets_the_rollout_continue_exactly_that_far(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []
    monkeypatch.setattr(rollout, "on_host", answering({"h1", "h3"}, seen))
    out = rollout.execute(fleet(6), ["deploy", "2.0"], canary=1, batch="1", max_fail=1)
    # h1 fails (1 <= 1: go on), h3 fails (2 > 1: halt): h4 and h5 are never touched
    assert seen == ["h0", "h1", "h2", "h3"]
    assert [o.state for o in out] == [
        "deployed",
        "failed",
        "deployed",
        "failed",
        "skipped",
        "skipped",
    ]
    assert out[0].release == "2.0 sha256:ab"


def test_bad_arguments() -> None:
    with pytest.raises(rollout.RolloutError):
        rollout.deploy_args("--all")
    with pytest.raises(rollout.RolloutError):
        rollout.execute(fleet(2), ["deploy", "x"], canary=1, batch="1", max_fail=-1)
    assert rollout.rollback_args("1.0") == ["rollback", "--to", "1.0"]
