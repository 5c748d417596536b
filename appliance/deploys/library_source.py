"""The library source concern, pyinfra side: the twin of roles/library_source.

Reads roles/library_source/defaults/main.yml (overridden by inventory data) and renders
roles/library_source/templates/ and files/, so a host provisioned by either engine
carries the same files (rclone.conf aside: its secrets are obscured with a random IV);
tests/infra/host/test_library_source.py verifies both. Same order and semantics as
roles/library_source/tasks/*.yml. Secrets: lectern_library_smb_password, else
$LECTERN_LIBRARY_SMB_PASSWORD, else the file lectern_library_smb_password_file on the
control machine; never printed (do not run pyinfra with --diff: it would print the
rendered secret files).

Ansible's handlers become lazy conditions: an operation's result is only known once
pyinfra executes it, so "reload systemd / restart the mount when a unit or rclone.conf
changed" is ``_if=any_changed(...)`` on operations planned right where the role flushes
its handlers.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from pathlib import Path
from typing import Any

from pyinfra.api.deploy import deploy
from pyinfra.context import host
from pyinfra.facts.files import Directory, File, FileContents, Link
from pyinfra.facts.server import Command
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from appliance.deploys import (
    ensure_dir,
    ensure_service,
    install_packages,
    put,
    render,
    role_vars_checked,
)
from appliance.roles import RoleError, role_dir

ROLE = "library_source"
TOOL = "/usr/local/sbin/lectern-library"
UNITS = "/etc/systemd/system"


def _unit_name(path: str) -> str:
    return path.strip("/").replace("/", "-")


def _unit(name: str, v: dict[str, Any], dest_name: str | None = None, **extra: Any) -> Any:
    return render(ROLE, f"{name}.j2", f"{UNITS}/{dest_name or name}", v, **extra)


def _reload(changed: list[Any]) -> None:
    """The role's "Reload systemd" handler, flushed: only when one of ``changed`` changed."""
    if changed:
        systemd.daemon_reload(name="Reload systemd", _if=any_changed(*changed))


def _start(unit: str, changed: list[Any]) -> None:
    """flush_handlers (daemon-reload if a unit file changed), then start and enable."""
    _reload(changed)
    ensure_service(name=f"Start {unit}", service=unit, running=True, enabled=True)


def _mountpoint(path: str) -> None:
    # mkdir only: once mounted read-only it cannot be chmod-ed or chown-ed
    if not host.get_fact(File, path=path) and not host.get_fact(Directory, path=path):
        server.shell(name=f"Create the mountpoint {path}", commands=[f"mkdir -p -m 0755 {path}"])


def _smb_password(v: dict[str, Any]) -> str:
    if v["lectern_library_smb_password"]:
        return str(v["lectern_library_smb_password"])
    if os.environ.get("LECTERN_LIBRARY_SMB_PASSWORD"):
        return os.environ["LECTERN_LIBRARY_SMB_PASSWORD"]
    path = v["lectern_library_smb_password_file"]
    if path:
        try:
            return Path(path).read_text().rstrip("\n")
        except OSError as error:
            raise RoleError(
                f"roles/{ROLE}: cannot read lectern_library_smb_password_file={path}: {error}"
            ) from error
    return ""


def remote_hash(remote: dict[str, Any], section: str) -> str:
    """sha256 of the declared remote, computed exactly like tasks/rclone_conf.yml does.

    Jinja's ``dictsort`` sorts keys case-insensitively; ``join`` turns values into str.
    The role's ``join('\n')`` sits in a folded YAML scalar, where Ansible keeps the
    backslash: the separator is a backslash and an "n", not a newline (a unit test runs
    the role's own expression through ansible-playbook against this function).
    """
    merged = {**remote, "_section": section}
    ordered = sorted(merged.items(), key=lambda item: str(item[0]).lower())
    text = "\\n".join(f"{key}={value}" for key, value in ordered)
    return hashlib.sha256(text.encode()).hexdigest()


def _rclone_conf(v: dict[str, Any], remote: dict[str, Any]) -> list[Any]:
    """Write rclone.conf only when absent or when the declared remote changed.

    Returns the operations that write it (empty when it is up to date), for the
    "Restart the rclone mount" handler.
    """
    config_dir = v["lectern_library_config_dir"]
    conf = f"{config_dir}/rclone.conf"
    digest = remote_hash(remote, v["lectern_library_rclone_remote_name"])
    stamp = host.get_fact(FileContents, path=f"{conf}.sha256") or []
    if host.get_fact(File, path=conf) and [line.strip() for line in stamp] == [digest]:
        return []
    plain = f"{conf}.plain"
    # Plain values for a moment (0600, root), obscured on the host by rclone itself.
    plain_conf = render(
        ROLE, "rclone.conf.j2", plain, v, mode="600", lectern_library_rclone_remote=remote
    )
    keys = ",".join(k for k in remote if k in v["lectern_library_rclone_obscure"])
    obscure = (
        "import subprocess,sys,os\n"
        "src,dst,keys=sys.argv[1],sys.argv[2],set(filter(None,sys.argv[3].split(',')))\n"
        "out=[]\n"
        "for line in open(src):\n"
        "    k,sep,val=line.rstrip('\\n').partition(' = ')\n"
        "    if sep and k in keys:\n"
        "        val=subprocess.run(['rclone','obscure','-'],input=val,capture_output=True,"
        "text=True,check=True).stdout.strip()\n"
        "        line=k+sep+val+'\\n'\n"
        "    out.append(line)\n"
        "fd=os.open(dst+'.tmp',os.O_WRONLY|os.O_CREAT|os.O_TRUNC,0o600)\n"
        "os.write(fd,''.join(out).encode());os.close(fd)\n"
        "os.replace(dst+'.tmp',dst);os.unlink(src)\n"
    )
    write = server.shell(
        name=f"Obscure the secrets into {conf}",
        commands=[
            f"python3 -c {shlex.quote(obscure)} {plain} {conf} {shlex.quote(keys)}",
            f"echo {digest} > {conf}.sha256 && chmod 600 {conf}.sha256",
        ],
    )
    return [plain_conf, write]


def _local(v: dict[str, Any], root: str) -> tuple[str, str]:
    path = v["lectern_library_local_path"]
    # tasks/local.yml runs the installed tool; facts are gathered before anything is
    # installed, so the same tool (files/lectern-library) runs from stdin here
    tool = (role_dir(ROLE) / "files" / "lectern-library").read_text()
    check = host.get_fact(
        Command,
        command=f"python3 - check --pragma integrity_check {shlex.quote(path)} 2>&1"
        f" <<'LECTERN_TOOL_EOF' && echo ok || true\n{tool}\nLECTERN_TOOL_EOF",
    )
    lines = (check or "").splitlines()
    if not path or not lines or lines[-1] != "ok":
        raise RoleError(
            f"roles/{ROLE}: lectern_library_local_path={path!r} is not a healthy Calibre library"
            f" ({' '.join(lines[:1])}); point it at the folder holding metadata.db"
        )
    primary = f"{root}/sources/primary"
    _mountpoint(primary)
    op = _unit(
        "bind.mount",
        v,
        f"{_unit_name(primary)}.mount",
        library_source_what=path,
        library_source_where=primary,
    )
    _start(f"{_unit_name(primary)}.mount", [op])
    return "bind", "library on this host's disk"


def _smb(v: dict[str, Any], root: str) -> tuple[str, str]:
    if not v["lectern_library_smb_host"]:
        raise RoleError(f"roles/{ROLE}: lectern_library_mode=smb needs lectern_library_smb_host")
    password = _smb_password(v)
    probe = host.get_fact(
        Command,
        command="if grep -qw cifs /proc/filesystems; then echo kernel;"
        " elif modprobe -n -q cifs 2>/dev/null; then echo module; else echo none; fi",
    )
    forced = v["lectern_library_smb_transport"]
    if forced != "auto":
        transport = "kernel-cifs" if forced == "kernel" else "rclone-fuse"
        reason = f"forced by lectern_library_smb_transport={forced}"
    else:
        transport = "kernel-cifs" if probe != "none" else "rclone-fuse"
        reason = "kernel cifs available" if probe != "none" else "no kernel cifs"
    primary = f"{root}/sources/primary"
    _mountpoint(primary)
    config_dir = v["lectern_library_config_dir"]
    if transport == "kernel-cifs":
        render(
            ROLE,
            "smb-credentials.j2",
            f"{config_dir}/smb-credentials",
            v,
            mode="600",
            lectern_library_smb_password=password,
        )
        units = [
            _unit(f"cifs.{kind}", v, f"{_unit_name(primary)}.{kind}")
            for kind in ("mount", "automount")
        ]
        _start(f"{_unit_name(primary)}.automount", units)
        return transport, reason
    remote = {
        "type": "smb",
        "host": v["lectern_library_smb_host"],
        "user": v["lectern_library_smb_username"],
        "pass": password,
    }
    conf = _rclone_conf(v, remote)
    unit = _unit("lectern-library-smb.service", v)
    service = "lectern-library-smb.service"
    # flush_handlers: Reload systemd, then "Restart the rclone mount" (a running mount
    # only: a stopped one is started below)
    _reload([unit])
    restart = systemd.service(
        name="Restart the rclone mount",
        service=service,
        running=None,
        restarted=True,
        _if=any_changed(unit, *conf),
    )
    start = ensure_service(
        name="Start the rclone mount service", service=service, running=True, enabled=True
    )
    # Ansible's wait_for never fails and changes nothing; here it runs only when the
    # mount was (re)started, so that a run with nothing to do stays a no-op.
    server.shell(
        name="Wait for the share's metadata.db",
        commands=[f"for i in $(seq 30); do [ -f {primary}/metadata.db ] && break; sleep 1; done"],
        _if=any_changed(restart, start),
    )
    return transport, reason


def _rclone(v: dict[str, Any], root: str) -> tuple[str, str]:
    remote = {**v["lectern_library_rclone_remote"], **v["lectern_library_rclone_remote_secrets"]}
    if "type" not in remote:
        raise RoleError(f"roles/{ROLE}: lectern_library_mode=rclone needs a remote with `type`")
    _rclone_conf(v, remote)
    ensure_dir(
        name="Create the snapshot directory",
        path=f"{root}/rclone",
        mode="755",
    )
    files.link(
        name="Point the primary at the current snapshot",
        path=f"{root}/sources/primary",
        target="../rclone/current",
        force=True,
        force_backup=False,
    )
    units = [
        _unit(unit, v)
        for unit in ("lectern-library-rclone.service", "lectern-library-rclone.timer")
    ]
    _start("lectern-library-rclone.timer", units)
    kind = remote["type"]
    return "rclone-sync", f"timer-driven sync from a {kind} remote"


def _onedrive(v: dict[str, Any], root: str) -> tuple[str, str]:
    confdir = f"{v['lectern_library_config_dir']}/onedrive"
    for path, mode in ((confdir, "700"), (f"{root}/onedrive", "755")):
        ensure_dir(name=f"Create {path}", path=path, user="root", group="root", mode=mode)
    for name in ("config", "sync_list"):
        render(ROLE, f"onedrive.{name}.j2", f"{confdir}/{name}", v, mode="600")
    directory = v["lectern_library_onedrive_directory"]
    files.link(
        name="Point the primary at the synced folder",
        path=f"{root}/sources/primary",
        target=f"../onedrive/{directory}",
        force=True,
        force_backup=False,
    )
    units = [
        _unit(unit, v)
        for unit in ("lectern-library-onedrive.service", "lectern-library-onedrive.path")
    ]
    _reload(units)
    ensure_service(
        name="Enable the onedrive service",
        service="lectern-library-onedrive.service",
        running=None,  # enable only: onedrive needs an authorization first
        enabled=True,
    )
    _start("lectern-library-onedrive.path", [])
    reason = f"Debian onedrive client, monitor mode, single directory {directory}"
    return "onedrive-monitor", reason


def _replicas(v: dict[str, Any], root: str) -> None:
    replicas = v["lectern_library_replica_paths"]
    views = [f"{root}/sources/replica{index}" for index in range(1, len(replicas) + 1)]
    for path in replicas:
        ensure_dir(
            name=f"Create the replica folder {path}",
            path=path,
            mode="755",
        )
    for view in views:
        _mountpoint(view)
    units = [
        _unit(
            "bind.mount",
            v,
            f"{_unit_name(view)}.mount",
            library_source_what=path,
            library_source_where=view,
        )
        for path, view in zip(replicas, views, strict=True)
    ]
    if replicas:
        units += [
            _unit(unit, v)
            for unit in ("lectern-library-replicas.service", "lectern-library-replicas.timer")
        ]
    _reload(units)
    for view in views:
        _start(f"{_unit_name(view)}.mount", [])
    if replicas:
        _start("lectern-library-replicas.timer", [])
        if any(not host.get_fact(File, path=f"{p}/metadata.db") for p in replicas):
            server.shell(name="Fill the replicas once", commands=[f"{TOOL} sync-replicas || true"])


def _present(v: dict[str, Any]) -> None:
    mode = v["lectern_library_mode"]
    packages = list(v["lectern_library_packages"])
    packages += ["rclone", "fuse3"] if mode in ("smb", "rclone") else []
    packages += ["cifs-utils"] if mode == "smb" else []
    packages += ["onedrive"] if mode == "onedrive" else []
    install_packages(
        name="Install the packages of this mode", packages=packages, no_recommends=True
    )

    root = v["lectern_library_root"]
    config_dir = v["lectern_library_config_dir"]
    for path in (config_dir, root, f"{root}/sources"):
        ensure_dir(name=f"Create {path}", path=path, user="root", group="root", mode="755")
    put(
        name="Install the library tool",
        src=str(role_dir(ROLE) / "files" / "lectern-library"),
        dest=TOOL,
        mode="755",
    )
    setup = {"local": _local, "smb": _smb, "rclone": _rclone, "onedrive": _onedrive}[mode]
    transport, reason = setup(v, root)
    print(f"[{host.name}] library source: mode={mode} transport={transport} reason={reason}")
    render(
        ROLE,
        "library-source.j2",
        f"{config_dir}/library-source",
        v,
        library_source_transport=transport,
        library_source_reason=reason,
    )
    if mode == "rclone" and not host.get_fact(Link, path=f"{root}/rclone/current"):
        # tasks/rclone_sync.yml: once the state file (the tool's configuration) exists.
        # rc 2: synced, but no healthy source to point the stable path at (the role
        # accepts it too); anything else fails the run
        server.shell(
            name="First sync (staging, integrity check, atomic switch)",
            commands=[f"{TOOL} rclone-sync || [ $? -eq 2 ]"],
        )
    _replicas(v, root)
    units = [
        _unit(unit, v)
        for unit in ("lectern-library-health.service", "lectern-library-health.timer")
    ]
    _start("lectern-library-health.timer", units)
    # The role runs `switch` every time and reports a change only when it switched. The
    # switch is needed unless the stable path already points at a healthy primary (the
    # tool's own first choice), which is what a converged host looks like.
    primary = f"{root}/sources/primary"
    settled = host.get_fact(
        Command,
        command=f'if [ -x {TOOL} ] && [ "$(readlink {root}/library)" = sources/primary ]'
        f" && {TOOL} check {primary} >/dev/null 2>&1; then echo settled; else echo switch; fi",
    )
    if settled != "settled":
        # rc 2: no healthy source (the link points at a missing path); the role accepts it
        server.shell(
            name="Point the stable path at the freshest healthy source",
            commands=[f"{TOOL} switch || [ $? -eq 2 ]"],
        )


def _absent(v: dict[str, Any]) -> None:
    root = v["lectern_library_root"]
    config_dir = v["lectern_library_config_dir"]
    sources = _unit_name(f"{root}/sources")
    listing = host.get_fact(
        Command,
        command=f"cd {UNITS} && ls -1 lectern-library-* {sources}-*.mount {sources}-*.automount"
        " 2>/dev/null || true",
    )
    units = [u for u in (listing or "").splitlines() if u]
    first = [u for u in units if u.endswith((".timer", ".path", ".automount"))]
    for unit in first + [u for u in units if u not in first]:
        ensure_service(name=f"Stop {unit}", service=unit, running=False, enabled=False)
    for unit in units:
        files.file(name=f"Remove {unit}", path=f"{UNITS}/{unit}", present=False)
    if units:
        systemd.daemon_reload(name="Reload systemd")
    # The role runs its removal script every time and reports a change only when it
    # removed something; run it only when it would (never: a view with content, the
    # user's data, is kept and does not count).
    leftovers = host.get_fact(
        Command,
        command=f"root={shlex.quote(root)}; "
        '[ -L "$root/library" ] && echo library; '
        'for view in "$root"/sources/*; do '
        '[ -L "$view" ] && echo "$view"; '
        '[ -d "$view" ] && ! [ -L "$view" ] && { mountpoint -q "$view"'
        ' || [ -z "$(ls -A "$view")" ]; } && echo "$view"; done; '
        '[ -d "$root/sources" ] && [ -z "$(ls -A "$root/sources")" ] && echo sources; '
        '[ -d "$root/rclone" ] && echo rclone; '
        '[ -d "$root" ] && [ -z "$(ls -A "$root")" ] && echo root; true',
    )
    if leftovers:
        script = (Path(role_dir(ROLE)) / "tasks" / "absent.yml").read_text()
        body = script.split("ansible.builtin.shell: |\n", 1)[1].split("  args:", 1)[0]
        body = "\n".join(line[4:] for line in body.splitlines())
        body = body.replace("{{ lectern_library_root | quote }}", shlex.quote(root))
        server.shell(
            name="Remove the stable path, source views and rclone snapshots", commands=[body]
        )
    for path in (
        f"{config_dir}/library-source",
        f"{config_dir}/smb-credentials",
        f"{config_dir}/rclone.conf",
        f"{config_dir}/rclone.conf.sha256",
        TOOL,
    ):
        files.file(name=f"Remove {path}", path=path, present=False)
    files.directory(
        name="Remove the onedrive confdir", path=f"{config_dir}/onedrive", present=False
    )


@deploy("Lectern library source")
def apply() -> None:
    data = host.data.dict()  # type: ignore[no-untyped-call]  # untyped in pyinfra
    v = role_vars_checked(ROLE, data)
    if v["lectern_library_state"] == "present":
        _present(v)
    else:
        _absent(v)


if __name__ != "appliance.deploys.library_source":
    apply()
