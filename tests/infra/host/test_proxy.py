"""roles/proxy and appliance/deploys/proxy.py: one set of host assertions for both engines.

Run by molecule (roles/proxy/molecule/*) and against lab hosts like test_base.py.
Expected values come from the host's variables (conftest.py: the `proxy` fixture).
Optional environment (molecule sets it; the backends must answer with their own name):
  LECTERN_PROXY_BACKENDS=A:PORT,B:PORT   two upstreams: switch between them under load
                                         (zero failed requests), validation rollback,
                                         compression (/big.txt) and, with nginx, limit_req
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable
from typing import Any

import pytest

from appliance.roles import role_dir

Render = Callable[[str, str, dict[str, Any]], str]
ROLE = "proxy"
SCRIPTS = ("lectern-proxy-switch", "lectern-proxy-cert")
BACKENDS = [b for b in os.environ.get("LECTERN_PROXY_BACKENDS", "").split(",") if b]

# Runs ON the host: clients in threads (a new TLS connection per request, the CA
# verified) while lectern-proxy-switch moves the upstream; prints a JSON summary.
SWITCH_UNDER_LOAD = r"""
import json, ssl, subprocess, sys, threading, time, urllib.request
url, cafile, target = sys.argv[1:4]
ctx = ssl.create_default_context(cafile=cafile)
seen, failures, stop = [], [], threading.Event()
def loop():
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
                seen.append(r.read().decode().strip())
        except Exception as e:
            failures.append(repr(e))
        time.sleep(0.01)
threads = [threading.Thread(target=loop) for _ in range(4)]
for t in threads: t.start()
time.sleep(1.5)
switch = "/usr/local/sbin/lectern-proxy-switch"
sw = subprocess.run([switch, target], capture_output=True, text=True)
time.sleep(1.5)
stop.set()
for t in threads: t.join()
print(json.dumps({"rc": sw.returncode, "out": sw.stdout + sw.stderr, "requests": len(seen),
  "failed": len(failures), "failures": failures[:5], "first": seen[:1], "last": seen[-1:]}))
"""


def _url(v: dict[str, Any], path: str = "/") -> tuple[str, str]:
    """(URL, curl --resolve option) for the first server name, via this host's loopback."""
    name = v["lectern_proxy_server_names"][0]
    port = v["lectern_proxy_https_port"]
    return f"https://{name}:{port}{path}", f"--resolve {name}:{port}:127.0.0.1"


def _curl(host: Any, v: dict[str, Any], path: str = "/", extra: str = "") -> Any:
    url, resolve = _url(v, path)
    return host.run(
        f"curl -sS --max-time 10 --cacert {v['lectern_proxy_ca_export']} {resolve} {extra} {url}"
    )


class TestProxyPresent:
    """lectern_proxy_state=present."""

    @pytest.fixture(autouse=True)
    def _only_present(self, proxy_state: str) -> None:
        if proxy_state != "present":
            pytest.skip("host provisioned with lectern_proxy_state=absent")

    def test_scripts(self, host: Any) -> None:
        for script in SCRIPTS:
            f = host.file(f"/usr/local/sbin/{script}")
            assert f.is_file and f.user == "root" and f.mode == 0o755
            assert f.content_string == (role_dir(ROLE) / "files" / script).read_text()

    def test_proxy_conf(self, host: Any, proxy: dict[str, Any], render: Render) -> None:
        conf = host.file(f"{proxy['lectern_proxy_config_dir']}/proxy.conf")
        assert conf.mode == 0o644
        assert conf.content_string == render(ROLE, "proxy.conf.j2", proxy)

    def test_engine_config(self, host: Any, proxy: dict[str, Any], render: Render) -> None:
        if proxy["lectern_proxy_engine"] == "caddy":
            caddyfile = host.file("/etc/caddy/Caddyfile")
            assert caddyfile.content_string == render(ROLE, "Caddyfile.j2", proxy)
            assert (
                host.run("caddy validate --adapter caddyfile --config /etc/caddy/Caddyfile").rc == 0
            )
        else:
            site = host.file("/etc/nginx/sites-available/lectern.conf")
            assert site.content_string == render(ROLE, "lectern-nginx.conf.j2", proxy)
            link = host.file("/etc/nginx/sites-enabled/lectern.conf")
            assert link.is_symlink and link.linked_to == "/etc/nginx/sites-available/lectern.conf"
            assert host.run("nginx -t -q").rc == 0

    def test_service(self, host: Any, proxy: dict[str, Any]) -> None:
        service = host.service(proxy["lectern_proxy_engine"])
        assert service.is_running
        assert service.is_enabled

    def test_upstream_file(self, host: Any, proxy: dict[str, Any]) -> None:
        engine = proxy["lectern_proxy_engine"]
        upstream = host.file(f"{proxy['lectern_proxy_config_dir']}/upstream.{engine}")
        assert upstream.is_file and upstream.mode == 0o644
        shown = host.check_output("lectern-proxy-switch --show").split()
        assert shown and all(":" in target for target in shown)

    def test_https_verified_with_exported_ca(self, host: Any, proxy: dict[str, Any]) -> None:
        if proxy["lectern_proxy_tls"] != "internal":
            pytest.skip("tls=acme: the certificate comes from a public CA")
        ca = host.file(proxy["lectern_proxy_ca_export"])
        assert ca.is_file and ca.mode == 0o644
        for name in proxy["lectern_proxy_server_names"]:
            port = proxy["lectern_proxy_https_port"]
            # --cacert, never -k: the chain must verify against the exported root
            # A name is resolved to loopback; an IP is dialled as it is: clients send no
            # SNI for an IP, so the server picks the certificate by the address dialled.
            resolve = "" if _is_ip(name) else f" --resolve {name}:{port}:127.0.0.1"
            cmd = host.run(
                f"curl -sS -o /dev/null -w '%{{http_code}}' --max-time 10 --cacert {ca.path}"
                f"{resolve} https://{name}:{port}/"
            )
            assert cmd.rc == 0, f"https://{name}: {cmd.stderr}"

    def test_security_headers(self, host: Any, proxy: dict[str, Any]) -> None:
        headers = _curl(host, proxy, "/", "-o /dev/null -D -").stdout.lower()
        hsts = f"strict-transport-security: max-age={proxy['lectern_proxy_hsts_max_age']}"
        assert hsts in headers
        assert "x-content-type-options: nosniff" in headers
        assert f"referrer-policy: {proxy['lectern_proxy_referrer_policy']}".lower() in headers
        assert f"x-frame-options: {proxy['lectern_proxy_frame_options']}".lower() in headers
        assert "content-security-policy: frame-ancestors" in headers

    def test_tls_versions(self, host: Any, proxy: dict[str, Any]) -> None:
        name = proxy["lectern_proxy_server_names"][0]
        port = proxy["lectern_proxy_https_port"]
        base = f"openssl s_client -connect 127.0.0.1:{port} -servername {name} </dev/null"
        assert host.run(f"{base} -tls1_2").rc == 0
        assert host.run(f"{base} -tls1_3").rc == 0
        assert host.run(f"{base} -tls1_1").rc != 0

    def test_http_redirects_to_https(self, host: Any, proxy: dict[str, Any]) -> None:
        name = proxy["lectern_proxy_server_names"][0]
        port = proxy["lectern_proxy_http_port"]
        out = host.check_output(
            f"curl -sS -o /dev/null -w '%{{http_code}} %{{redirect_url}}' --max-time 10"
            f" --resolve {name}:{port}:127.0.0.1 http://{name}:{port}/x"
        )
        code, location = out.split(" ", 1)
        assert code in ("301", "308") and location.startswith(f"https://{name}")

    def test_compression(self, host: Any, proxy: dict[str, Any]) -> None:
        if not BACKENDS:
            pytest.skip("LECTERN_PROXY_BACKENDS not set (needs a compressible response)")
        headers = _curl(host, proxy, "/big.txt", "-o /dev/null -D - -H 'Accept-Encoding: gzip'")
        assert "content-encoding: gzip" in headers.stdout.lower()

    def test_auth_rate_limit(self, host: Any, proxy: dict[str, Any]) -> None:
        if proxy["lectern_proxy_engine"] != "nginx":
            pytest.skip("limit_req is nginx's; Caddy's Debian build has no rate limit module")
        url, resolve = _url(proxy, proxy["lectern_proxy_auth_paths"][0] + "login")
        count = int(proxy["lectern_proxy_auth_burst"]) + 30
        codes = host.check_output(
            f"for i in $(seq {count}); do curl -s -o /dev/null -w '%{{http_code}} '"
            f" --cacert {proxy['lectern_proxy_ca_export']} {resolve} {url}; done"
        ).split()
        assert codes[0] != "429"
        assert codes.count("429") >= 20, codes

    def test_switch_under_load(self, host: Any, proxy: dict[str, Any]) -> None:
        if len(BACKENDS) < 2:
            pytest.skip("LECTERN_PROXY_BACKENDS needs two upstreams")
        url, _ = _url(proxy, "/")
        name = proxy["lectern_proxy_server_names"][0]
        if name != "localhost":
            pytest.skip("the load client resolves the first name; use localhost first")
        original = host.check_output("lectern-proxy-switch --show").split()
        try:
            for target in (BACKENDS[1], BACKENDS[0]):
                out = host.check_output(
                    f"python3 - {url} {proxy['lectern_proxy_ca_export']} {target}"
                    f" <<'EOF'\n{SWITCH_UNDER_LOAD}\nEOF"
                )
                result = json.loads(out.splitlines()[-1])
                assert result["rc"] == 0, result
                assert result["failed"] == 0, result
                # a switch under real concurrency (the count varies with the machine's load)
                assert result["requests"] >= 20, result
                assert result["last"] == [f"backend-{target.rsplit(':', 1)[1]}"], result
        finally:
            host.run(f"lectern-proxy-switch {' '.join(original)}")

    def test_queued_connections_survive_a_reload(self, host: Any, proxy: dict[str, Any]) -> None:
        if not host.file("/proc/sys/net/ipv4/tcp_migrate_req").exists:
            pytest.skip("Linux < 5.14: no tcp_migrate_req")
        conf = host.file("/etc/sysctl.d/60-lectern-proxy.conf")
        if not proxy["lectern_proxy_migrate_queued_connections"]:
            assert not conf.exists
            return
        assert conf.mode == 0o644
        assert (
            conf.content_string
            == (role_dir(ROLE) / "files" / "lectern-proxy-sysctl.conf").read_text()
        )
        assert host.check_output("cat /proc/sys/net/ipv4/tcp_migrate_req") == "1"

    def test_caddy_reads_the_local_ca_certificate(self, host: Any, proxy: dict[str, Any]) -> None:
        if proxy["lectern_proxy_engine"] != "caddy" or proxy["lectern_proxy_tls"] != "internal":
            pytest.skip("Caddy with tls=internal")
        tls = f"{proxy['lectern_proxy_config_dir']}/proxy-tls"
        key = host.file(f"{tls}/privkey.pem")
        assert key.group == "caddy" and key.mode == 0o640  # never world-readable
        assert host.file(tls).mode == 0o750
        assert host.run(f"sudo -u caddy test -r {tls}/privkey.pem").rc == 0
        # the served chain ends in the exported CA
        chain = host.file(f"{tls}/fullchain.pem").content_string
        assert host.file(proxy["lectern_proxy_ca_export"]).content_string.strip() in chain

    def test_cert_tool_repairs_caddys_access_keeping_the_certificate(
        self, host: Any, proxy: dict[str, Any]
    ) -> None:
        """A key made unreadable by hand is reported and repaired on the next provision."""
        if proxy["lectern_proxy_engine"] != "caddy" or proxy["lectern_proxy_tls"] != "internal":
            pytest.skip("Caddy with tls=internal")
        tls = f"{proxy['lectern_proxy_config_dir']}/proxy-tls"
        names = " ".join(proxy["lectern_proxy_server_names"])
        before = host.check_output(f"sha256sum {tls}/fullchain.pem {tls}/privkey.pem")
        host.check_output(f"chmod 0600 {tls}/privkey.pem && chgrp root {tls}/privkey.pem")
        try:
            assert host.check_output(f"lectern-proxy-cert check {names}") == "access"
            assert host.check_output(f"lectern-proxy-cert ensure {names}") == "changed"
            assert host.check_output(f"lectern-proxy-cert check {names}") == "ok"
            assert host.check_output(f"lectern-proxy-cert ensure {names}") == "ok"
        finally:  # leave the host as provisioned whatever failed
            host.run(f"chgrp caddy {tls}/privkey.pem && chmod 0640 {tls}/privkey.pem")
        key = host.file(f"{tls}/privkey.pem")
        assert key.group == "caddy" and key.mode == 0o640
        assert host.check_output(f"sha256sum {tls}/fullchain.pem {tls}/privkey.pem") == before

    def test_switch_refuses_and_restores(self, host: Any, proxy: dict[str, Any]) -> None:
        before = host.check_output("lectern-proxy-switch --show")
        assert host.run("lectern-proxy-switch 'not a target'").rc == 2
        assert host.run("lectern-proxy-switch 127.0.0.1:99999").rc == 2
        assert host.run("lectern-proxy-switch 127.0.0.1:9").rc == 5  # nothing listens
        # validation fails: the previous upstream file comes back, nothing is reloaded
        conf = f"{proxy['lectern_proxy_config_dir']}/proxy.conf"
        if proxy["lectern_proxy_engine"] == "caddy":  # caddy validate does not resolve names
            other = next(t for t in ("127.0.0.1:8001", "127.0.0.1:8002") if t not in before)
            failing = (
                f"sed 's|^CADDYFILE=.*|CADDYFILE=/nonexistent|' {conf} > /run/lectern-test.conf"
                " && LECTERN_PROXY_CONF=/run/lectern-test.conf"
                f" lectern-proxy-switch --force {other}"
            )
        else:  # nginx -t resolves upstream names
            failing = "lectern-proxy-switch --force no-such-host.invalid:80"
        assert host.run(failing).rc == 3
        assert host.check_output("lectern-proxy-switch --show") == before


class TestProxyAbsent:
    """lectern_proxy_state=absent: Lectern's proxy configuration is gone, packages stay."""

    @pytest.fixture(autouse=True)
    def _only_absent(self, proxy_state: str) -> None:
        if proxy_state != "absent":
            pytest.skip("host provisioned with lectern_proxy_state=present")

    def test_service_stopped(self, host: Any, proxy: dict[str, Any]) -> None:
        engine = proxy["lectern_proxy_engine"]
        if host.package(engine).is_installed:
            assert not host.service(engine).is_running
            assert not host.service(engine).is_enabled

    def test_config_removed(self, host: Any, proxy: dict[str, Any]) -> None:
        config_dir = proxy["lectern_proxy_config_dir"]
        for path in (
            *(f"/usr/local/sbin/{s}" for s in SCRIPTS),
            "/etc/caddy/Caddyfile",
            "/etc/nginx/sites-enabled/lectern.conf",
            "/etc/nginx/sites-available/lectern.conf",
            f"{config_dir}/upstream.caddy",
            f"{config_dir}/upstream.nginx",
            f"{config_dir}/proxy.conf",
            "/etc/sysctl.d/60-lectern-proxy.conf",
        ):
            assert not host.file(path).exists, path

    def test_certificates_kept_unless_purge(self, host: Any, proxy: dict[str, Any]) -> None:
        if proxy["lectern_proxy_tls"] != "internal":
            pytest.skip("tls=acme")
        exported = host.file(proxy["lectern_proxy_ca_export"]).exists
        assert exported != bool(proxy["lectern_proxy_purge"])

    def test_packages_kept(self, host: Any, proxy: dict[str, Any]) -> None:
        engine = proxy["lectern_proxy_engine"]
        assert host.package(engine).is_installed


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
