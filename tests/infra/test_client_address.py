"""Through the TLS proxy the app sees each client's own address.

The per-address sign-in limit (LOGIN_MAX_PER_IP, 20 failures per LOGIN_RATE_WINDOW)
must hold one client back and no other. pi's app believes X-Forwarded-For only from
its compose network's gateway (FORWARDED_ALLOW_IPS=gateway, roles/appliance), where
the host's proxy connects from; the proxy names the address it saw and nothing the
client sent. Proved behind Caddy (the lab's proxy) and behind nginx (pi is switched by
the role's OFF-then-ON path with LECTERN_VAR_ overrides, and back to Caddy at the end):

- client A: 20 failed sign-ins -> 401 each, the 21st -> 429 from the app, although it
  carries a forged ``X-Forwarded-For: 1.2.3.4``;
- client B, another address on the same LAN: signs in (200), also when its forged
  header names A, and also on the app's slot port past the proxy (the app trusts the
  gateway, not everyone: fails with FORWARDED_ALLOW_IPS=*; with it empty, B gets 429);
- the app's peer is the gateway for every proxied connection (what `gateway` trusts);
- after the engine switch the proxy forwards to the slot that serves, green too.

Clients are fresh addresses added to the `nas` container for the proof (the app keeps
an address's failures for 300 s, so a rerun must not reuse them), each proof a few
seconds. Runs after test_rollout/test_backup_cli (pi serves a release; nas is a bare
host, a mere machine on the LAN here).
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from labtools import BIN, run

from appliance import lab as lab_mod

HOST = "pi"
CLIENTS = next(n for n in lab_mod.NODES if n.name == "nas")
IP = {n.name: n.ip for n in lab_mod.NODES}
FAILURES = 20  # LOGIN_MAX_PER_IP, the app's default
PER_ACCOUNT = 4  # failures per made-up name: below LOGIN_MAX_PER_ACCOUNT (5)
FORGED = "1.2.3.4"
# Client addresses are taken in turn from here (a counter in .lab/): 75 proofs before one
# comes back, far more than the app's 300 s memory of an address.
POOL = [str(ipaddress.ip_address("172.30.57.100") + i) for i in range(150)]
COUNTER = lab_mod.STATE_DIR / "client-address-counter"

# Runs in the client container (Debian's python3, no curl there): sign-in attempts from
# one source address, a new TLS connection each (verified against the lab CA).
CLIENT = r"""
import http.client, json, ssl, sys, urllib.parse
job = json.load(sys.stdin)
ctx = ssl.create_default_context(cadata=job["ca"])
out = []
for attempt in job["attempts"]:
    where = dict(timeout=15, source_address=(job["source"], 0))
    if attempt.get("port"):  # the app's slot port itself, past the proxy
        conn = http.client.HTTPConnection(job["host"], attempt["port"], **where)
    else:
        conn = http.client.HTTPSConnection(job["host"], 443, context=ctx, **where)
    form = {"username": attempt["username"], "password": attempt["password"]}
    body = urllib.parse.urlencode(form)
    headers = {"Content-Type": "application/x-www-form-urlencoded", **attempt["headers"]}
    try:
        conn.request("POST", "/api/auth/login", body, headers)
    except ConnectionRefusedError:
        out.append({"status": "refused", "body": "", "retry_after": None})
        continue
    resp = conn.getresponse()
    text = resp.read().decode(errors="replace")
    retry = resp.getheader("Retry-After")
    out.append({"status": resp.status, "body": text[:300], "retry_after": retry})
    conn.close()
print(json.dumps(out))
"""


def on(host: str, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(*lab_mod.ssh_args(IP[host]), command, check=check)


def active_slot() -> str:
    status = json.loads(on(HOST, "sudo lectern-release status --json").stdout)
    assert status["active"] and status["healthy"], (
        f"{HOST} serves no healthy release (the infra tier provisions it in test_provision; "
        f"alone: make provision HOST={HOST}): {status}"
    )
    return str(status["active"]["slot"])


def slot_port(slot: str) -> int:
    return int(json.loads(on(HOST, "cat /etc/lectern/release.json").stdout)["slots"][slot])


def proxy_forwards_to_the_serving_slot() -> None:
    slot = active_slot()
    shown = on(HOST, "sudo lectern-proxy-switch --show").stdout.split()
    assert shown == [f"127.0.0.1:{slot_port(slot)}"], (
        f"{HOST}'s {engine()} forwards to {shown}, but slot {slot} serves"
    )


def engine() -> str:
    out = on(HOST, "sudo sed -n 's/^ENGINE=//p' /etc/lectern/proxy.conf", check=False)
    return out.stdout.strip()


def take_addresses(count: int) -> list[str]:
    start = int(COUNTER.read_text()) if COUNTER.exists() else 0
    COUNTER.write_text(f"{start + count}\n")
    return [POOL[(start + i) % len(POOL)] for i in range(count)]


@contextmanager
def client_addresses(count: int) -> Iterator[list[str]]:
    """``count`` fresh addresses on the lab network, held by the client container."""
    addresses = take_addresses(count)
    box = CLIENTS.container
    dev = run("docker", "exec", box, "sh", "-c", f"ip -o -4 addr show | grep -w {CLIENTS.ip}")
    iface = dev.stdout.split()[1]
    try:
        for address in addresses:
            run("docker", "exec", box, "ip", "addr", "replace", f"{address}/32", "dev", iface)
        yield addresses
    finally:
        for address in addresses:
            drop = ("ip", "addr", "del", f"{address}/32", "dev", iface)
            run("docker", "exec", box, *drop, check=False)


def sign_in(source: str, attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    job = {
        "host": IP[HOST],
        "source": source,
        "ca": on(HOST, "cat /etc/lectern/lab-ca.crt").stdout,
        "attempts": [{"headers": {}, **a} for a in attempts],
    }
    done = run(
        "docker", "exec", "-i", CLIENTS.container, "python3", "-c", CLIENT, stdin=json.dumps(job)
    )
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def user(lab: object) -> tuple[str, str]:
    """A real account on pi for client B (a new one per run)."""
    slot = active_slot()
    name, password = f"proxyclient-{int(time.time())}", "proxy-client-pass-123"
    admin = f"sudo docker exec -i lectern-app-{slot} python -m lectern_app admin"
    on(HOST, f"echo {password} | {admin} create-user {name} --password-stdin")
    return name, password


def app_peers() -> tuple[str, set[str]]:
    """The app container's default gateway, and the peers of its established connections
    on :8000 (without the container's own healthcheck over loopback)."""
    slot = active_slot()
    pid = f"$(sudo docker inspect -f '{{{{.State.Pid}}}}' lectern-app-{slot})"
    out = on(
        HOST,
        f"sudo nsenter -t {pid} -n ip -4 route show default; echo ---; "
        f"sudo nsenter -t {pid} -n ss -Htn state established '( sport = :8000 )'",
    ).stdout
    route, _, sockets = out.partition("---")
    gateway = route.split()[2]
    peers = {line.split()[-1].rsplit(":", 1)[0] for line in sockets.splitlines() if line.strip()}
    return gateway, peers - {"127.0.0.1"}


def prove_per_client_limits(user: tuple[str, str], proxy: str) -> None:
    assert engine() == proxy, f"{HOST}'s proxy is {engine()!r}, expected {proxy}"
    name, password = user
    stamp = f"{int(time.time() * 1000)}"
    # A's failures over made-up names, PER_ACCOUNT each: only the per-address limit can
    # refuse A's last attempt (whose name has no failures at all)
    failures = [
        {"username": f"nobody-{stamp}-{i // PER_ACCOUNT}", "password": "wrong"}
        for i in range(FAILURES)
    ]
    forged = {
        "username": f"nobody-{stamp}-last",
        "password": "wrong",
        "headers": {"X-Forwarded-For": FORGED},
    }
    port = slot_port(active_slot())
    with client_addresses(2) as (a, b):
        as_a = {"username": name, "password": password, "headers": {"X-Forwarded-For": a}}
        started = time.monotonic()
        seen_a = sign_in(a, [*failures, forged])
        # B: plainly, then claiming to be A, then the same past the proxy (the slot port,
        # published on the LAN in the lab): the app believes no header but the proxy's
        seen_b = sign_in(
            b, [{"username": name, "password": password}, as_a, {**as_a, "port": port}]
        )
        took = time.monotonic() - started
    statuses = [r["status"] for r in seen_a[:FAILURES]]
    assert statuses == [401] * FAILURES, f"{proxy}: A's failed sign-ins: {seen_a}"
    last = seen_a[FAILURES]
    assert last["status"] == 429 and "too_many_attempts" in last["body"], (
        f"{proxy}: A's 21st attempt (X-Forwarded-For: {FORGED}) must be the app's 429: {last}"
    )
    assert last["retry_after"], last
    assert [r["status"] for r in seen_b[:2]] == [200, 200], (
        f"{proxy}: B ({b}) is locked out by A ({a})'s failures: {seen_b}"
    )
    # refused: the slot port is published on loopback only (no way past the proxy)
    assert seen_b[2]["status"] in (200, "refused"), (
        f"{proxy}: B ({b}) on the slot port :{port} was taken for A ({a}): {seen_b[2]}"
    )
    gateway, peers = app_peers()
    assert peers <= {gateway}, f"{proxy}: the app's peers {peers} are not its gateway {gateway}"
    print(f"{proxy}: A={a} B={b}, app peer(s) {sorted(peers)} (gateway {gateway}), {took:.1f} s")


def provision_proxy(**overrides: str) -> float:
    """Apply the proxy concern on HOST by pyinfra with variables overridden (LECTERN_VAR_)."""
    env = {f"LECTERN_VAR_{key}": value for key, value in overrides.items()}
    started = time.monotonic()
    appliance = str(BIN / "appliance")
    run(appliance, "provision", HOST, "--engine", "pyinfra", "--only", "proxy", env=env)
    return time.monotonic() - started


def serves() -> bool:
    """/api/health answers 200 through HOST's proxy (TLS verified with the lab CA)."""
    tls = ssl.create_default_context(cadata=on(HOST, "cat /etc/lectern/lab-ca.crt").stdout)
    try:
        with urllib.request.urlopen(f"https://{IP[HOST]}/api/health", timeout=10, context=tls):
            return True
    except OSError:  # HTTPError (a 502 from a proxy without its app) is one
        return False


def back_on_caddy() -> float:
    """HOST on Caddy, as the lab inventory says (after a run that stopped half-way too)."""
    took = 0.0
    if engine() == "nginx":
        took += provision_proxy(lectern_proxy_engine="nginx", lectern_proxy_state="absent")
    if engine() != "caddy":
        took += provision_proxy()
    return took


@pytest.fixture
def caddy_on_pi(lab: object) -> None:
    back_on_caddy()


@pytest.fixture
def nginx_on_pi(caddy_on_pi: None, capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """pi behind nginx: the role's OFF path for Caddy, then nginx ON; back at the end."""
    times = {}
    try:
        times["caddy off"] = provision_proxy(lectern_proxy_state="absent")
        times["nginx on"] = provision_proxy(lectern_proxy_engine="nginx")
        # whichever slot serves (test_rollout may leave green): not the new file's blue
        proxy_forwards_to_the_serving_slot()
        assert serves(), f"{HOST} does not serve through nginx"
        yield
    finally:
        times["back to caddy"] = back_on_caddy()
        with capsys.disabled():
            took = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in times.items())
            print(f"\nproxy engine switch on {HOST} (pyinfra, --only proxy): {took}")
    assert engine() == "caddy" and serves(), f"{HOST} is not back on Caddy"
    proxy_forwards_to_the_serving_slot()


def test_one_client_s_failed_sign_ins_do_not_lock_out_another_behind_caddy(
    caddy_on_pi: None, user: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with capsys.disabled():
        print()
        prove_per_client_limits(user, "caddy")


def test_one_client_s_failed_sign_ins_do_not_lock_out_another_behind_nginx(
    nginx_on_pi: None, user: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with capsys.disabled():
        print()
        prove_per_client_limits(user, "nginx")
