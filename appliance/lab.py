"""The lab: a fleet of real hosts (systemd + sshd containers) on one private network.

    pi, server, nas  lab hosts, reached by SSH as `admin` with a key the lab generates
    pc               the user's PC: a Calibre library (made by calibredb) shared over SMB
    registry         Debian's docker-registry, which lab hosts pull images from

Everything the lab creates carries the label ``org.lectern.lab`` so `lab down` can
remove exactly that. State (SSH key, SMB secret, the PC's library) lives in ``.lab/``.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from appliance.library_gen import build_library
from appliance.roles import REPO_ROOT

NETWORK = "lectern-lab"
SUBNET = "172.30.57.0/24"
LABEL = "org.lectern.lab"
STATE_DIR = REPO_ROOT / ".lab"
INVENTORY_DIR = REPO_ROOT / "inventories" / "lab"
HOST_IMAGE = "lectern/lab-host:bookworm"
PC_IMAGE = "lectern/lab-pc:bookworm"
REGISTRY_IMAGE = "lectern/lab-registry:bookworm"
LIBRARY_BOOKS = 60
SMB_SHARE = "CalibreLibrary"
SMB_USER = "calibre"

# --privileged is refused on this kind of machine (CAP_SYS_RESOURCE is withheld), so
# systemd hosts get exactly the capabilities they need, one by one.
SYSTEMD_FLAGS = [
    "--cap-add",
    "SYS_ADMIN",
    "--cap-add",
    "NET_ADMIN",
    "--cap-add",
    "SYS_PTRACE",
    "--cap-add",
    "MKNOD",
    "--device",
    "/dev/fuse",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--cgroupns=host",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    "--tmpfs",
    "/tmp",
    # /proc/sys is read-only in a container: the netns sysctl the proxy role sets on a
    # real host (tcp_migrate_req, see roles/proxy/defaults) is set when the host starts.
    "--sysctl",
    "net.ipv4.tcp_migrate_req=1",
]


@dataclass(frozen=True)
class LabNode:
    name: str
    role: str  # "host" (provisioned appliance), "pc" or "registry"
    ip: str

    @property
    def container(self) -> str:
        return f"lectern-lab-{self.name}"


NODES = [
    LabNode("registry", "registry", "172.30.57.10"),
    LabNode("pc", "pc", "172.30.57.11"),
    LabNode("pi", "host", "172.30.57.21"),
    LabNode("server", "host", "172.30.57.22"),
    LabNode("nas", "host", "172.30.57.23"),
]


class LabError(RuntimeError):
    pass


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"docker {' '.join(args[:3])}...: {proc.stderr.strip()}")
    return proc


def ssh_key() -> Path:
    return STATE_DIR / "ssh" / "id_ed25519"


def ssh_config() -> Path:
    """An ssh_config for the lab (used by testinfra and by hand: ssh -F .lab/ssh/config pi)."""
    return STATE_DIR / "ssh" / "config"


def smb_secret_file() -> Path:
    return STATE_DIR / "secrets" / "smb-password"


def library_dir() -> Path:
    return STATE_DIR / "pc-library"


def _ensure_state() -> None:
    key = ssh_key()
    key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lectern-lab", "-f", str(key)],
            check=True,
        )
    key.chmod(0o600)
    lines = []
    for node in NODES:
        if node.role != "registry":
            lines += [
                f"Host {node.name} {node.ip}",
                f"  HostName {node.ip}",
                "  User admin",
                f"  IdentityFile {key}",
                "  StrictHostKeyChecking no",
                "  UserKnownHostsFile /dev/null",
                "  LogLevel ERROR",
                "",
            ]
    ssh_config().write_text("\n".join(lines))
    secret = smb_secret_file()
    secret.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not secret.exists():
        secret.write_text(secrets.token_urlsafe(18) + "\n")
    secret.chmod(0o600)
    if not (library_dir() / "metadata.db").exists():
        shutil.rmtree(library_dir(), ignore_errors=True)
        print(f"lab: generating a {LIBRARY_BOOKS}-book Calibre library with calibredb")
        build_library(library_dir(), LIBRARY_BOOKS)


def _uplink_mtu() -> str:
    try:
        route = subprocess.run(["ip", "route", "show", "default"], capture_output=True, text=True)
        dev = route.stdout.split()[4]
        return (Path("/sys/class/net") / dev / "mtu").read_text().strip()
    except (IndexError, OSError):
        return "1500"


def _ensure_network() -> None:
    if _docker("network", "inspect", NETWORK, check=False).returncode == 0:
        return
    _docker(
        "network",
        "create",
        "--subnet",
        SUBNET,
        "--label",
        LABEL,
        "-o",
        f"com.docker.network.driver.mtu={_uplink_mtu()}",
        NETWORK,
    )


def _container_state(node: LabNode) -> dict[str, str] | None:
    proc = _docker("inspect", node.container, check=False)
    if proc.returncode != 0:
        return None
    info = json.loads(proc.stdout)[0]
    return {
        "running": str(info["State"]["Running"]),
        "image": info["Image"],
        "state_dir": info["Config"]["Labels"].get(f"{LABEL}.state", ""),
    }


def _image_id(image: str) -> str:
    return _docker("image", "inspect", "-f", "{{.Id}}", image).stdout.strip()


def _run_args(node: LabNode) -> tuple[str, list[str]]:
    pub = f"{ssh_key()}.pub:/etc/ssh/lab_authorized_keys:ro"
    common = [
        "--hostname",
        node.name,
        "--network",
        NETWORK,
        "--ip",
        node.ip,
        "--network-alias",
        node.name,
        "--label",
        LABEL,
        "--label",
        f"{LABEL}.state={STATE_DIR}",
        "--label",
        f"{LABEL}.role={node.role}",
    ]
    if node.role == "registry":
        return REGISTRY_IMAGE, [
            *common,
            "-p",
            "127.0.0.1:5000:5000",
            "-v",
            "lectern-lab-registry:/var/lib/docker-registry",
        ]
    if node.role == "pc":
        return PC_IMAGE, [
            *common,
            *SYSTEMD_FLAGS,
            "-v",
            pub,
            "-v",
            f"{library_dir()}:/srv/calibre:ro",
        ]
    return HOST_IMAGE, [
        *common,
        *SYSTEMD_FLAGS,
        "-v",
        pub,
        "-v",
        f"lectern-lab-{node.name}-docker:/var/lib/docker",
    ]


def _ensure_container(node: LabNode) -> str:
    image, args = _run_args(node)
    state = _container_state(node)
    if state and (state["image"] != _image_id(image) or state["state_dir"] != str(STATE_DIR)):
        _docker("rm", "-f", node.container)  # built from an older image or another checkout
        state = None
    if state is None:
        if node.role == "host":
            # A new host is a bare host: never inherit a previous one's /var/lib/docker.
            _docker("volume", "rm", "-f", f"lectern-lab-{node.name}-docker", check=False)
        _docker("run", "-d", "--name", node.container, *args, image)
        return "created"
    if state["running"] != "True":
        _docker("start", node.container)
        return "started"
    return "ok"


def _wait_tcp(ip: str, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((ip, port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise LabError(f"{ip}:{port} did not answer within {timeout:.0f} s")


def ssh_args(ip: str) -> list[str]:
    return [
        "ssh",
        "-i",
        str(ssh_key()),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "BatchMode=yes",
        f"admin@{ip}",
    ]


def _wait_ssh(node: LabNode, timeout: float = 60) -> None:
    _wait_tcp(node.ip, 22, timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run([*ssh_args(node.ip), "true"], capture_output=True).returncode == 0:
            return
        time.sleep(0.5)
    raise LabError(f"{node.name}: sshd answers but the lab key is refused")


def _configure_pc(node: LabNode) -> None:
    password = smb_secret_file().read_text().strip()
    # smbpasswd -a both creates and updates: idempotent. The secret goes through stdin.
    proc = subprocess.run(
        ["docker", "exec", "-i", node.container, "smbpasswd", "-s", "-a", SMB_USER],
        input=f"{password}\n{password}\n",
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise LabError(f"pc: smbpasswd failed: {proc.stderr.strip()}")
    _wait_tcp(node.ip, 445)


def write_inventory() -> Path:
    """inventories/lab/hosts.yml — read by Ansible directly and by pyinfra via appliance."""
    pc = next(n for n in NODES if n.role == "pc")
    registry = next(n for n in NODES if n.role == "registry")
    hosts = [n for n in NODES if n.role == "host"]
    doc = {
        "all": {
            "vars": {
                "ansible_user": "admin",
                "ansible_become": True,
                "ansible_ssh_private_key_file": str(ssh_key()),
                "ansible_python_interpreter": "/usr/bin/python3",
                "lectern_lab": True,
                "lectern_lab_pc_address": pc.ip,
                # What only the lab knows (addresses, the secret's path on this machine)
                # goes here; everything else about the profiles is in group_vars/.
                "lectern_docker_insecure_registries": [f"{registry.ip}:5000"],
                "lectern_appliance_image": f"{registry.ip}:5000/lectern/app",
                "lectern_appliance_image_tag": "edge",  # images/build.sh's channel on main
                "lectern_library_mode": "smb",
                "lectern_library_smb_host": pc.ip,
                "lectern_library_smb_share": SMB_SHARE,
                "lectern_library_smb_username": SMB_USER,
                "lectern_library_smb_password_file": str(smb_secret_file()),
            },
            "children": {
                n.name: {
                    "hosts": {
                        n.name: {
                            "ansible_host": n.ip,
                            # the names the lab CA's certificate must carry for this host
                            "lectern_proxy_server_names": [n.name, n.ip],
                        }
                    }
                }
                for n in hosts
            },
        }
    }
    INVENTORY_DIR.mkdir(parents=True, exist_ok=True)
    path = INVENTORY_DIR / "hosts.yml"
    text = "# Written by `appliance lab up`; do not edit (it is rewritten on every run).\n"
    text += "---\n" + yaml.safe_dump(doc, sort_keys=False)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def up() -> dict[str, str]:
    """Bring the lab up; idempotent. Returns what happened to each node."""
    for image in (HOST_IMAGE, PC_IMAGE, REGISTRY_IMAGE):
        if _docker("image", "inspect", image, check=False).returncode != 0:
            raise LabError(f"image {image} is missing: run `make lab-image`")
    _ensure_state()
    _ensure_network()
    result = {node.name: _ensure_container(node) for node in NODES}
    for node in NODES:
        if node.role == "registry":
            _wait_tcp(node.ip, 5000)
        else:
            _wait_ssh(node)
        if node.role == "pc":
            _configure_pc(node)
    write_inventory()
    return result


def reset(names: list[str]) -> None:
    """Replace lab hosts with bare ones (fresh container and /var/lib/docker volume)."""
    known = {n.name: n for n in NODES if n.role == "host"}
    for name in names:
        if name not in known:
            raise LabError(f"{name!r} is not a lab host (choose from {', '.join(known)})")
        _docker("rm", "-f", "-v", known[name].container, check=False)
        _docker("volume", "rm", "-f", f"lectern-lab-{name}-docker", check=False)
    up()


def down() -> list[str]:
    removed = []
    ids = _docker("ps", "-aq", "--filter", f"label={LABEL}").stdout.split()
    if ids:
        _docker("rm", "-f", "-v", *ids)
        removed += [f"{len(ids)} containers"]
    vols = _docker("volume", "ls", "-q", "--filter", "name=lectern-lab-").stdout.split()
    if vols:
        _docker("volume", "rm", "-f", *vols)
        removed += [f"{len(vols)} volumes"]
    if _docker("network", "inspect", NETWORK, check=False).returncode == 0:
        _docker("network", "rm", NETWORK)
        removed.append(f"network {NETWORK}")
    inv = INVENTORY_DIR / "hosts.yml"
    if inv.exists():
        inv.unlink()
        removed.append(str(inv.relative_to(REPO_ROOT)))
    if STATE_DIR.exists():
        shutil.rmtree(STATE_DIR)
        removed.append(".lab/ (key, secrets, pc library)")
    return removed


def is_up() -> bool:
    return all((s := _container_state(n)) is not None and s["running"] == "True" for n in NODES)


def status() -> list[dict[str, str]]:
    rows = []
    for node in NODES:
        state = _container_state(node)
        running = bool(state and state["running"] == "True")
        if not running:
            check = "-"
        elif node.role == "registry":
            check = "registry /v2/ ok" if _http_ok(f"http://{node.ip}:5000/v2/") else "no answer"
        else:
            ok = subprocess.run([*ssh_args(node.ip), "true"], capture_output=True).returncode == 0
            check = "ssh ok" if ok else "ssh refused"
            if node.role == "pc":
                check += f", smb //{node.ip}/{SMB_SHARE}"
        rows.append(
            {
                "name": node.name,
                "role": node.role,
                "ip": node.ip,
                "state": "running" if running else ("stopped" if state else "absent"),
                "check": check,
            }
        )
    return rows


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False
