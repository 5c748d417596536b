"""The proxy concern, pyinfra side: the twin of roles/proxy (read its README).

Reads roles/proxy/defaults/main.yml (overridden by inventory data) and renders
roles/proxy/templates/ and installs roles/proxy/files/, so a host provisioned by either
engine carries the same files byte for byte; tests/infra/host/test_proxy.py verifies
both. Same order and semantics as roles/proxy/tasks/*.yml; in particular the upstream
file is written only when it does not exist (the release tool owns it afterwards).

Run alone (development):   pyinfra -y @docker/CONTAINER appliance/deploys/proxy.py
Run by the CLI:            appliance provision HOST  (appliance/deploys/site.py)
"""

from __future__ import annotations

import shlex
from typing import Any

from pyinfra.api.deploy import deploy
from pyinfra.context import host
from pyinfra.facts.files import File
from pyinfra.facts.server import Command
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from appliance.deploys import (
    ensure_dir,
    ensure_service,
    install_packages,
    installed_packages,
    put,
    render,
    role_vars_checked,
)
from appliance.roles import role_dir

ROLE = "proxy"
SBIN = "/usr/local/sbin"
SCRIPTS = ("lectern-proxy-switch", "lectern-proxy-cert")
CADDYFILE = "/etc/caddy/Caddyfile"
NGINX_SITE = "/etc/nginx/sites-available/lectern.conf"
NGINX_LINK = "/etc/nginx/sites-enabled/lectern.conf"
ACME_WEBROOT = "/var/www/lectern-acme"
SYSCTL_FILE = "/etc/sysctl.d/60-lectern-proxy.conf"
MIGRATE_REQ = "/proc/sys/net/ipv4/tcp_migrate_req"


def packages(v: dict[str, Any]) -> list[str]:
    """The engine's packages, decided like tasks/present.yml does."""
    engine = v["lectern_proxy_engine"]
    wanted = list(v[f"lectern_proxy_{engine}_packages"])
    if engine == "nginx" and v["lectern_proxy_tls"] == "acme":
        wanted += list(v["lectern_proxy_certbot_packages"])
    return wanted


def _migrate_queued(v: dict[str, Any]) -> None:
    """tasks/migrate_queued.yml: net.ipv4.tcp_migrate_req=1 where the kernel has it."""
    if not v["lectern_proxy_migrate_queued_connections"]:
        files.file(name="Remove the sysctl file", path=SYSCTL_FILE, present=False)
        return
    now = host.get_fact(Command, command=f"cat {MIGRATE_REQ} 2>/dev/null || true")
    if not now:
        return  # Linux < 5.14
    put(
        name="Install the sysctl file",
        src=str(role_dir(ROLE) / "files" / "lectern-proxy-sysctl.conf"),
        dest=SYSCTL_FILE,
        mode="644",
    )
    if now.strip() != "1":
        server.shell(
            name="Set the running value", commands=["sysctl -q -w net.ipv4.tcp_migrate_req=1"]
        )


def _local_cert(v: dict[str, Any]) -> Any:
    """tasks/local_cert.yml: the server certificate from Lectern's local CA, or None."""
    quoted = " ".join(shlex.quote(n) for n in v["lectern_proxy_server_names"])
    tool = f"{SBIN}/lectern-proxy-cert"
    state = (
        host.get_fact(Command, command=f"{tool} check {quoted} 2>/dev/null || echo missing")
        or "missing"
    )
    if state != "ok" and (v["lectern_proxy_tls"] == "internal" or state == "missing"):
        return server.shell(
            name="Issue the certificate from the local CA", commands=[f"{tool} ensure {quoted}"]
        )
    return None


def _caddy(v: dict[str, Any]) -> None:
    # tls=internal: Lectern's CA, not Caddy's `tls internal` (see tasks/caddy.yml)
    cert = _local_cert(v) if v["lectern_proxy_tls"] == "internal" else None
    caddyfile = render(ROLE, "Caddyfile.j2", CADDYFILE, v)
    ensure_service(name="Start and enable Caddy", service="caddy", running=True, enabled=True)
    changed = [caddyfile] + ([cert] if cert is not None else [])
    systemd.service(name="Reload caddy", service="caddy", reloaded=True, _if=any_changed(*changed))


def _nginx(v: dict[str, Any]) -> None:
    names = list(v["lectern_proxy_server_names"])
    tool = f"{SBIN}/lectern-proxy-cert"
    ensure = _local_cert(v)
    ensure_dir(
        name="Create the ACME webroot", path=ACME_WEBROOT, user="root", group="root", mode="755"
    )
    site = render(ROLE, "lectern-nginx.conf.j2", NGINX_SITE, v)
    link = files.link(name="Enable the nginx site", path=NGINX_LINK, target=NGINX_SITE)
    ensure_service(name="Start and enable nginx", service="nginx", running=True, enabled=True)
    changed = [site, link] + ([ensure] if ensure is not None else [])
    systemd.service(name="Reload nginx", service="nginx", reloaded=True, _if=any_changed(*changed))
    if v["lectern_proxy_tls"] == "acme" and not host.get_fact(
        File, path="/etc/letsencrypt/live/lectern/fullchain.pem"
    ):
        # Cannot run without a public name; rendered and untested in the lab.
        argv = [
            "certbot", "certonly", "--webroot", "-w", ACME_WEBROOT, "--cert-name", "lectern",
            "--non-interactive", "--agree-tos",
            "--deploy-hook", f"{tool} install-certbot",
        ]  # fmt: skip
        email = v["lectern_proxy_acme_email"]
        argv += ["--email", email] if email else ["--register-unsafely-without-email"]
        if v["lectern_proxy_acme_ca"]:
            argv += ["--server", v["lectern_proxy_acme_ca"]]
        argv += [f"--domain={n}" for n in names]
        server.shell(
            name="Obtain the certificate from the ACME CA with certbot (webroot)",
            commands=[" ".join(shlex.quote(a) for a in argv)],
        )


def _present(v: dict[str, Any]) -> None:
    wanted = packages(v)
    install_packages(name="Install the proxy packages", packages=wanted)

    config_dir = v["lectern_proxy_config_dir"]
    ensure_dir(
        name="Create the Lectern configuration directory",
        path=config_dir,
        mode="755",
    )
    render(ROLE, "proxy.conf.j2", f"{config_dir}/proxy.conf", v)
    for script in SCRIPTS:
        put(
            name=f"Install {script}",
            src=str(role_dir(ROLE) / "files" / script),
            dest=f"{SBIN}/{script}",
            mode="755",
        )
    engine = v["lectern_proxy_engine"]
    upstream = f"{config_dir}/upstream.{engine}"
    made = None
    if not host.get_fact(File, path=upstream):
        # Created only when absent: afterwards the release tool owns it.
        made = render(ROLE, f"upstream.{engine}.j2", upstream, v)
    _migrate_queued(v)
    if engine == "caddy":
        _caddy(v)
    else:
        _nginx(v)
    if made is not None:
        # A new upstream names the blue slot: where a release already serves, the release
        # tool points the proxy at the slot that serves (tasks/present.yml).
        tool = shlex.quote(v["lectern_proxy_release_tool"])
        server.shell(
            name="Point a new upstream file at the serving release",
            commands=[f"if [ -x {tool} ]; then {tool} converge; fi"],
            _if=any_changed(made),
        )


def _absent(v: dict[str, Any]) -> None:
    # OFF path: packages stay; certificates stay unless lectern_proxy_purge.
    engine = v["lectern_proxy_engine"]
    if engine in installed_packages():
        ensure_service(
            name="Stop and disable the proxy", service=engine, running=False, enabled=False
        )
    config_dir = v["lectern_proxy_config_dir"]
    leftovers = [
        CADDYFILE,
        NGINX_LINK,
        NGINX_SITE,
        ACME_WEBROOT,
        f"{config_dir}/upstream.caddy",
        f"{config_dir}/upstream.caddy.prev",
        f"{config_dir}/upstream.nginx",
        f"{config_dir}/upstream.nginx.prev",
        f"{config_dir}/proxy.conf",
        SYSCTL_FILE,
    ] + [f"{SBIN}/{script}" for script in SCRIPTS]
    if v["lectern_proxy_purge"]:
        if host.get_fact(File, path="/etc/letsencrypt/live/lectern/fullchain.pem"):
            server.shell(
                name="Delete the certbot lineage",
                commands=["certbot delete --non-interactive --cert-name lectern"],
            )
        leftovers += [
            f"{config_dir}/proxy-ca",
            f"{config_dir}/proxy-tls",
            v["lectern_proxy_ca_export"],
            v["lectern_proxy_caddy_data_dir"],
        ]
    present = host.get_fact(
        Command,
        command="for p in "
        + " ".join(shlex.quote(p) for p in leftovers)
        + ' ; do if [ -e "$p" ] || [ -L "$p" ]; then echo "$p"; fi; done',
    )
    for path in (present or "").splitlines():
        server.shell(name=f"Remove {path}", commands=[f"rm -rf {shlex.quote(path)}"])


@deploy("Lectern proxy")
def apply() -> None:
    data = host.data.dict()  # type: ignore[no-untyped-call]  # untyped in pyinfra
    v = role_vars_checked(ROLE, data)
    if v["lectern_proxy_state"] == "present":
        _present(v)
    else:
        _absent(v)


# pyinfra executes deploy files (CLI argument, local.include) without a module name;
# importing this module (tests, other deploys) must not run it.
if __name__ != "appliance.deploys.proxy":
    apply()
