#!/usr/bin/python3
"""lectern-release: the ONE implementation of updates and rollbacks, on the host.

Installed by the appliance role as /usr/local/bin/lectern-release. Fleet rollouts (over
SSH), the unattended update timer and `appliance rollback` all call it, so a rollback
works from the host alone when the control machine or the registry is gone.

    lectern-release deploy REF [--dry-run]   REF: a tag, sha256:<digest> or repo@sha256:<digest>
    lectern-release agent --channel TAG [--notify CMD]   unattended: deploy TAG's digest
    lectern-release rollback [--to TAG]
    lectern-release converge            finish or undo an interrupted deploy (boot, next run);
                                        point a proxy that strays at the serving slot
    lectern-release status [--json]
    lectern-release history [--json]

A deploy is gated: pre-update snapshot of /data -> pull by digest -> start the new
release in the idle slot beside the serving one -> wait until /api/health AND a real
listing answer -> switch the proxy upstream (graceful reload) -> drain and stop the old
slot -> record the release. Any failure removes the new slot; the old one never stopped
serving. Python 3 standard library only: it runs on any Debian/Raspberry Pi OS host.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CONFIG = Path(os.environ.get("LECTERN_RELEASE_CONFIG", "/etc/lectern/release.json"))
SCHEMA_LABEL = "org.lectern.schema-version"
VERSION_LABEL = "org.opencontainers.image.version"


class ReleaseError(RuntimeError):
    """A deploy or rollback that could not proceed; the serving release is untouched."""


@dataclass
class Config:
    image: str  # repository, e.g. registry.lan:5000/lectern/app
    compose_file: str = "/opt/lectern/docker-compose.yml"
    project: str = "lectern"
    state_dir: str = "/var/lib/lectern/release"
    slots: dict[str, int] = field(default_factory=lambda: {"blue": 8001, "green": 8002})
    bind: str = "127.0.0.1"  # where slot ports are published (0.0.0.0: no proxy, LAN)
    # e.g. /usr/local/sbin/lectern-proxy-switch; "" or not installed = no proxy (clients
    # then reach the slot port itself: no zero-downtime switch without a proxy)
    proxy_switch: str = ""
    backup_command: str = ""  # e.g. /usr/local/bin/lectern-backup; "" = no snapshots
    data_dir: str = "/var/lib/lectern/data"
    keep: int = 3
    health_timeout: float = 120.0
    drain_seconds: float = 3.0
    probe_path: str = "/api/books?per_page=1"

    @classmethod
    def load(cls, path: Path = CONFIG) -> Config:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ReleaseError(f"{path} is missing: provision the appliance role first") from exc
        except json.JSONDecodeError as exc:
            raise ReleaseError(f"{path} is not valid JSON: {exc}") from exc
        raw.pop("_comment", None)  # the "managed by" line of the rendered file
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(raw) - known
        if unknown:
            raise ReleaseError(f"{path}: unknown settings {sorted(unknown)}")
        return cls(**raw)

    @property
    def probe_host(self) -> str:
        """The address probes and the proxy dial: a wildcard bind is reached on loopback."""
        return "127.0.0.1" if self.bind in ("", "0.0.0.0", "::") else self.bind


@dataclass
class Release:
    tag: str
    digest: str
    time: str
    outcome: str  # ok | failed | interrupted | unchanged (never recorded)
    action: str = "deploy"  # deploy | rollback
    slot: str = ""
    snapshot: str = ""
    schema: str = ""
    reason: str = ""


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def log(message: str) -> None:
    print(f"lectern-release: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ state on disk


class State:
    """Ledger, the active slot and the journal of an operation in progress."""

    def __init__(self, cfg: Config) -> None:
        self.dir = Path(cfg.state_dir)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o750)

    def _read(self, name: str, default: Any) -> Any:
        path = self.dir / name
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return default

    def _write(self, name: str, data: Any) -> None:
        # Write-then-rename: a crash leaves the old file or the new one, never half of one.
        tmp = self.dir / f".{name}.tmp"
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        with tmp.open() as fh:
            os.fsync(fh.fileno())
        tmp.replace(self.dir / name)

    def ledger(self) -> list[Release]:
        return [Release(**r) for r in self._read("ledger.json", [])]

    def record(self, release: Release) -> None:
        entries = self._read("ledger.json", [])
        entries.append(asdict(release))
        self._write("ledger.json", entries[-50:])

    def active(self) -> dict[str, str] | None:
        data = self._read("active.json", None)
        return dict(data) if data else None

    def set_active(self, slot: str, release: Release) -> None:
        self._write(
            "active.json",
            {
                "slot": slot,
                "tag": release.tag,
                "digest": release.digest,
                "schema": release.schema,
                "since": release.time,
            },
        )

    def journal(self) -> dict[str, str] | None:
        data = self._read("journal.json", None)
        return dict(data) if data else None

    def begin(self, **entry: str) -> None:
        self._write("journal.json", entry)

    def end(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / "journal.json").unlink()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with (self.dir / "lock").open("w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise ReleaseError("another lectern-release is running") from exc
            yield


# ------------------------------------------------------------------ docker


def run(
    cmd: list[str], env: dict[str, str] | None = None, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
    except OSError as exc:  # e.g. docker-compose not installed
        raise ReleaseError(f"cannot run {cmd[0]}: {exc.strerror}") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ReleaseError(f"{' '.join(cmd[:3])} failed: {' / '.join(detail)}")
    return proc


class Docker:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def container(self, slot: str) -> str:
        return f"{self.cfg.project}-app-{slot}"

    def compose(
        self, slot: str, ref: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = dict(
            os.environ,
            LECTERN_IMAGE=ref,
            LECTERN_SLOT_SUFFIX=f"-{slot}",
            LECTERN_PORT=str(self.cfg.slots[slot]),
            LECTERN_BIND=self.cfg.bind,
        )
        cmd = [
            "docker-compose",
            "-p",
            f"{self.cfg.project}-{slot}",
            "-f",
            self.cfg.compose_file,
            *args,
        ]
        return run(cmd, env=env, check=check)

    def inspect_image(self, ref: str) -> dict[str, Any] | None:
        proc = run(["docker", "image", "inspect", ref], check=False)
        if proc.returncode != 0:
            return None
        data: list[dict[str, Any]] = json.loads(proc.stdout)
        return data[0]

    def resolve(self, ref: str) -> tuple[str, str]:
        """(tag, digest) of a tag or digest reference; pulls when the registry answers."""
        image = self.cfg.image
        if ref.startswith(f"{image}@"):
            ref = ref.split("@", 1)[1]
        if ref.startswith("sha256:"):
            pinned = f"{image}@{ref}"
            if self.inspect_image(pinned) is None:
                run(["docker", "pull", "-q", pinned])
            pinned_info = self.inspect_image(pinned) or {}
            labels = (pinned_info.get("Config") or {}).get("Labels") or {}
            return str(labels.get(VERSION_LABEL, ref[:19])), ref
        tagged = f"{image}:{ref}"
        pulled = run(["docker", "pull", "-q", tagged], check=False)
        info = self.inspect_image(tagged)
        if info is None:
            raise ReleaseError(f"cannot resolve {tagged}: {pulled.stderr.strip()[-200:]}")
        if pulled.returncode != 0:
            log(f"registry unreachable; using the local copy of {tagged}")
        digests = [
            d.split("@", 1)[1] for d in info.get("RepoDigests", []) if d.startswith(f"{image}@")
        ]
        if not digests:
            raise ReleaseError(f"{tagged} has no registry digest (was it pushed?)")
        return ref, digests[0]

    def schema(self, digest: str) -> str:
        info = self.inspect_image(f"{self.cfg.image}@{digest}") or {}
        return str(((info.get("Config") or {}).get("Labels") or {}).get(SCHEMA_LABEL, ""))

    def config_current(self, slot: str, digest: str) -> bool:
        """The slot's container was created from the compose file as it is now."""
        ref = f"{self.cfg.image}@{digest}"
        want = self.compose(slot, ref, "config", "--hash", "app", check=False).stdout.split()
        have = run(
            [
                "docker",
                "inspect",
                "-f",
                '{{index .Config.Labels "com.docker.compose.config-hash"}}',
                self.container(slot),
            ],
            check=False,
        ).stdout.strip()
        return len(want) == 2 and want[1] == have

    def running(self, slot: str) -> bool:
        proc = run(
            ["docker", "inspect", "-f", "{{.State.Running}}", self.container(slot)], check=False
        )
        return proc.stdout.strip() == "true"

    def start(self, slot: str, digest: str) -> None:
        self.compose(
            slot, f"{self.cfg.image}@{digest}", "up", "-d", "--no-deps", "--force-recreate", "app"
        )

    def stop(self, slot: str) -> None:
        run(["docker", "rm", "-f", self.container(slot)], check=False)

    def logs(self, slot: str) -> str:
        proc = run(["docker", "logs", "--tail", "5", self.container(slot)], check=False)
        return " / ".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])

    def prune(self, keep_digests: set[str]) -> None:
        """Remove old release images, never the last N releases (rollback is offline)."""
        proc = run(
            [
                "docker",
                "image",
                "ls",
                "--digests",
                "--format",
                "{{.Repository}} {{.Digest}} {{.ID}}",
                self.cfg.image,
            ],
            check=False,
        )
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].startswith("sha256:") and parts[1] not in keep_digests:
                run(["docker", "rmi", f"{parts[0]}@{parts[1]}"], check=False)


def http_ok(url: str, timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


# ------------------------------------------------------------------ operations


class Releaser:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.state = State(cfg)
        self.docker = Docker(cfg)

    def healthy(self, slot: str) -> bool:
        base = f"http://{self.cfg.probe_host}:{self.cfg.slots[slot]}"
        return http_ok(f"{base}/api/health") and http_ok(f"{base}{self.cfg.probe_path}")

    def wait_healthy(self, slot: str) -> None:
        deadline = time.monotonic() + self.cfg.health_timeout
        while time.monotonic() < deadline:
            if self.healthy(slot):
                return
            if not self.docker.running(slot):
                raise ReleaseError(f"the new release exited: {self.docker.logs(slot)}")
            time.sleep(0.5)
        raise ReleaseError(
            f"not healthy within {self.cfg.health_timeout:.0f} s "
            f"(/api/health and {self.cfg.probe_path}): {self.docker.logs(slot)}"
        )

    def idle_slot(self) -> tuple[str, str | None]:
        active = self.state.active()
        current = active["slot"] if active else None
        idle = next(s for s in self.cfg.slots if s != current)
        return idle, current

    def switch(self, slot: str) -> None:
        if not self.cfg.proxy_switch:
            return
        if not os.access(self.cfg.proxy_switch, os.X_OK):
            log(f"{self.cfg.proxy_switch} is not installed: no proxy to switch")
            return
        run([self.cfg.proxy_switch, self.target(slot)])

    def target(self, slot: str) -> str:
        """HOST:PORT the proxy dials for ``slot``."""
        return f"{self.cfg.probe_host}:{self.cfg.slots[slot]}"

    def proxy_strays(self, slot: str) -> bool:
        """The proxy forwards somewhere else than ``slot``: its upstream file was made
        anew (the proxy role's default, the blue slot: a proxy engine switched, or the
        file removed) after ``slot`` began to serve. False without a proxy."""
        if not self.cfg.proxy_switch or not os.access(self.cfg.proxy_switch, os.X_OK):
            return False
        shown = run([self.cfg.proxy_switch, "--show"], check=False)
        return shown.returncode == 0 and shown.stdout.split() != [self.target(slot)]

    def snapshot(self) -> str:
        if not self.cfg.backup_command:
            return ""
        if not os.access(self.cfg.backup_command, os.X_OK):
            # the backup role is off on this host: update without a snapshot, and a
            # rollback across a schema change will say there is none
            log(f"{self.cfg.backup_command} is not installed: no pre-update snapshot")
            return ""
        proc = run([self.cfg.backup_command, "snapshot", "--tag", "pre-update"], timeout=1800)
        lines = proc.stdout.strip().splitlines()
        return lines[-1].strip() if lines else ""

    def swap(
        self, tag: str, digest: str, action: str, snapshot: str = "", note: str = ""
    ) -> Release:
        """The gated swap shared by deploy and rollback; ``note`` goes into the ledger's
        reason when the swap succeeds (a failure's reason is the error)."""
        idle, current = self.idle_slot()
        release = Release(
            tag=tag,
            digest=digest,
            time=now(),
            outcome="failed",
            action=action,
            slot=idle,
            snapshot=snapshot,
            schema=self.docker.schema(digest),
        )
        self.state.begin(
            action=action,
            slot=idle,
            previous=current or "",
            tag=tag,
            digest=digest,
            started=release.time,
        )
        try:
            self.docker.start(idle, digest)
            self.wait_healthy(idle)
            self.switch(idle)
        except (ReleaseError, subprocess.TimeoutExpired) as exc:
            self.docker.stop(idle)
            release.reason = str(exc)
            self.state.record(release)
            self.state.end()
            where = f"slot {current} keeps serving" if current else "nothing was serving"
            raise ReleaseError(f"{action} of {tag} failed ({where}): {exc}") from exc
        self.state.set_active(idle, release)
        if current:
            time.sleep(self.cfg.drain_seconds)  # in-flight requests finish on the old slot
            self.docker.stop(current)
        release.outcome = "ok"
        release.reason = note
        self.state.record(release)
        self.state.end()
        self.prune()
        return release

    def prune(self) -> None:
        ok = [r for r in self.state.ledger() if r.outcome == "ok"]
        keep: list[str] = []
        for r in reversed(ok):
            if r.digest not in keep:
                keep.append(r.digest)
        self.docker.prune(set(keep[: self.cfg.keep]))

    def current(self, digest: str) -> bool:
        """`digest` serves, healthy, from the compose file as it is now."""
        active = self.state.active()
        return bool(
            active
            and active["digest"] == digest
            and self.healthy(active["slot"])
            and self.docker.config_current(active["slot"], digest)
        )

    def plan(self, ref: str) -> str:
        """What `deploy REF` would do, changing nothing (no pull: --check of the roles)."""
        image = self.cfg.image
        ref = ref.split("@", 1)[1] if ref.startswith(f"{image}@") else ref
        local = f"{image}@{ref}" if ref.startswith("sha256:") else f"{image}:{ref}"
        info = self.docker.inspect_image(local)
        if info is None:
            return f"would pull and deploy {ref}"
        digests = [d.split("@", 1)[1] for d in info.get("RepoDigests", [])]
        if ref.startswith("sha256:"):
            digests = [ref]
        if digests and self.current(digests[0]):
            active = self.state.active() or {}
            if self.proxy_strays(active["slot"]):
                return f"would point the proxy at slot {active['slot']}, where {ref} serves"
            return f"unchanged {ref} is serving"
        return f"would deploy {ref}"

    def deploy(self, ref: str) -> Release:
        with self.state.locked():
            self.converge_locked()
            tag, digest = self.docker.resolve(ref)
            active = self.state.active()
            if active and self.current(digest):
                log(f"{tag} ({digest[:19]}) is already serving; nothing to do")
                return Release(
                    tag=tag,
                    digest=digest,
                    time=now(),
                    outcome="unchanged",
                    slot=active["slot"],
                    reason="already serving",
                )
            if active and active["digest"] == digest:
                log(f"{tag} serves with an older compose file: redeploying it, gated")
            try:
                # A first deploy has no user data to protect yet.
                snapshot = self.snapshot() if active else ""
            except ReleaseError as exc:
                failed = Release(
                    tag=tag,
                    digest=digest,
                    time=now(),
                    outcome="failed",
                    reason=f"pre-update snapshot failed: {exc}",
                )
                self.state.record(failed)
                raise ReleaseError(f"deploy of {tag} refused: {failed.reason}") from exc
            return self.swap(tag, digest, "deploy", snapshot)

    def agent(self, channel: str, notify: str = "") -> Release:
        """Unattended update: the same gated deploy of whatever `channel` points at now."""
        try:
            return self.deploy(channel)
        except ReleaseError as exc:
            if notify:
                env = dict(os.environ, LECTERN_UPDATE_REASON=str(exc), LECTERN_CHANNEL=channel)
                proc = subprocess.run(
                    ["/bin/sh", "-c", notify], env=env, capture_output=True, text=True, check=False
                )
                if proc.returncode != 0:
                    log(f"notify command failed ({proc.returncode}): {proc.stderr.strip()[-200:]}")
            raise

    def rollback(self, to: str | None = None) -> Release:
        with self.state.locked():
            self.converge_locked()
            active = self.state.active()
            if not active:
                raise ReleaseError("nothing is deployed: there is no release to roll back from")
            candidates = [
                r
                for r in reversed(self.state.ledger())
                if r.outcome == "ok" and r.digest != active["digest"]
            ]
            if to:
                candidates = [r for r in candidates if to in (r.tag, r.digest)]
            if not candidates:
                wanted = f" matching {to}" if to else ""
                raise ReleaseError(f"no earlier successful release{wanted} in the ledger")
            target = candidates[0]
            if self.docker.inspect_image(f"{self.cfg.image}@{target.digest}") is None:
                run(["docker", "pull", "-q", f"{self.cfg.image}@{target.digest}"])
            staged = self.stage_restore_if_schema_differs(active, target)
            if not staged:
                return self.swap(target.tag, target.digest, "rollback")
            # The serving release writes the new schema: stop it, put the restored /data in
            # place (the current data is kept beside it), then start the old release.
            data = Path(self.cfg.data_dir)
            kept = data.with_name(f"{data.name}.pre-rollback-{int(time.time())}")
            self.docker.stop(active["slot"])
            data.rename(kept)
            staged.rename(data)
            note = f"restored /data from the pre-update snapshot; previous data in {kept}"
            try:
                return self.swap(target.tag, target.digest, "rollback", note=note)
            except ReleaseError:
                data.rename(staged)
                kept.rename(data)
                self.docker.start(active["slot"], active["digest"])
                raise

    def stage_restore_if_schema_differs(
        self, active: dict[str, str], target: Release
    ) -> Path | None:
        """Data written since the update is kept unless the schema changed in between.

        When it changed, the pre-update snapshot is restored into a staging directory
        first: a failed restore changes nothing and the serving release keeps serving.
        """
        current_schema = active.get("schema", "")
        if current_schema == self.docker.schema(target.digest):
            log("same data schema: user data written since the update is kept")
            return None
        update = next(
            (
                r
                for r in reversed(self.state.ledger())
                if r.digest == active["digest"] and r.snapshot
            ),
            None,
        )
        if not update or not self.cfg.backup_command:
            raise ReleaseError(
                f"schema {current_schema or '?'} -> {target.schema or '?'} needs the /data "
                "snapshot taken before the update, and there is none; not rolling back"
            )
        log(f"schema differs: restoring /data from pre-update snapshot {update.snapshot}")
        data = Path(self.cfg.data_dir)
        staged = data.with_name(f"{data.name}.restore")
        run(["rm", "-rf", str(staged)])
        run(
            [
                self.cfg.backup_command,
                "restore",
                "--snapshot",
                update.snapshot,
                "--target",
                str(staged),
            ],
            timeout=1800,
        )
        stat = data.stat()
        os.chown(staged, stat.st_uid, stat.st_gid)
        os.chmod(staged, stat.st_mode & 0o7777)
        return staged

    def converge(self) -> str:
        with self.state.locked():
            return self.converge_locked()

    def converge_locked(self) -> str:
        """Bring the host back to exactly one healthy release, the one the proxy forwards
        to, after a crash, a reboot or a new proxy upstream file."""
        journal = self.state.journal()
        active = self.state.active()
        message = "nothing to do"
        if journal:
            new = journal["slot"]
            if active and active["slot"] == new:
                # Crashed after the switch: the new release serves; stop the old slot.
                if journal.get("previous"):
                    self.docker.stop(journal["previous"])
                outcome = "ok"
            else:
                # Crashed before active.json said otherwise: the old release is the one of
                # record. The proxy may already point at the new slot: point it back first.
                if active and self.docker.running(active["slot"]):
                    self.switch(active["slot"])
                self.docker.stop(new)
                outcome = "interrupted"
            self.state.record(
                Release(
                    tag=journal.get("tag", ""),
                    digest=journal.get("digest", ""),
                    time=now(),
                    outcome=outcome,
                    action=journal["action"],
                    slot=new,
                    reason="completed by converge after a crash"
                    if outcome == "ok"
                    else "interrupted; undone by converge",
                )
            )
            self.state.end()
            message = f"interrupted {journal['action']} of {journal.get('tag')}: {outcome}"
        if active:
            for slot in self.cfg.slots:
                if slot != active["slot"] and self.docker.running(slot):
                    self.docker.stop(slot)  # a stray second release
            if not self.docker.running(active["slot"]):
                self.docker.start(active["slot"], active["digest"])
                self.wait_healthy(active["slot"])
                self.switch(active["slot"])
                message += f"; restarted {active['tag']} in slot {active['slot']}"
            elif self.proxy_strays(active["slot"]):
                self.switch(active["slot"])
                message += f"; proxy pointed at slot {active['slot']}"
        log(message)
        return message

    def status(self) -> dict[str, Any]:
        active = self.state.active()
        return {
            "active": active,
            "healthy": bool(active) and self.healthy(active["slot"]) if active else False,
            "in_progress": self.state.journal(),
            "last": [asdict(r) for r in self.state.ledger()[-5:]],
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lectern-release", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    deploy = sub.add_parser("deploy", help="gated deploy of a tag or digest")
    deploy.add_argument("ref")
    deploy.add_argument(
        "--dry-run", action="store_true", help="say what would happen; change nothing"
    )
    agent = sub.add_parser("agent", help="deploy what a channel tag points at (timer)")
    agent.add_argument("--channel", required=True)
    agent.add_argument("--notify", default="", help="shell command run when an update fails")
    sub.add_parser("rollback").add_argument("--to", default=None)
    sub.add_parser("converge")
    for name in ("status", "history"):
        sub.add_parser(name).add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        releaser = Releaser(Config.load())
        if args.cmd == "deploy" and args.dry_run:
            print(releaser.plan(args.ref))
        elif args.cmd in ("deploy", "agent"):
            r = (
                releaser.deploy(args.ref)
                if args.cmd == "deploy"
                else releaser.agent(args.channel, args.notify)
            )
            # First word: `deployed` or `unchanged` (the roles' changed_when reads it)
            verb = "unchanged" if r.outcome == "unchanged" else "deployed"
            print(f"{verb} {r.tag} {r.digest} in slot {r.slot}")
        elif args.cmd == "rollback":
            r = releaser.rollback(args.to)
            print(
                f"rolled back to {r.tag} {r.digest} in slot {r.slot}"
                + (f"; {r.reason}" if r.reason else "")
            )
        elif args.cmd == "converge":
            print(releaser.converge())
        elif args.cmd == "status":
            st = releaser.status()
            if args.json:
                print(json.dumps(st, indent=2))
            else:
                a = st["active"] or {}
                print(
                    f"{a.get('tag', '-')} {a.get('digest', '-')} slot={a.get('slot', '-')} "
                    f"healthy={st['healthy']}"
                )
        else:
            entries = [asdict(r) for r in releaser.state.ledger()]
            if args.json:
                print(json.dumps(entries, indent=2))
            for e in [] if args.json else entries:
                print(
                    f"{e['time']} {e['action']:8} {e['outcome']:11} {e['tag']:12} "
                    f"{e['digest'][:19]} {e['reason']}"
                )
    except ReleaseError as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
