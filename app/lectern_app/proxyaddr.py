"""Which peers may tell the app the client's address (X-Forwarded-For)."""

from __future__ import annotations

import ipaddress
import socket
import struct
from pathlib import Path

GATEWAY = "gateway"


def default_gateway(route_table: Path = Path("/proc/net/route")) -> str | None:
    """The IPv4 default gateway: inside a container on a bridge network, the address
    the host's own processes (the TLS proxy) connect from."""
    try:
        lines = route_table.read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000" and fields[2] != "00000000":
            return socket.inet_ntoa(struct.pack("<L", int(fields[2], 16)))
    return None


def trusted_proxies(setting: str, route_table: Path = Path("/proc/net/route")) -> str:
    """The uvicorn `forwarded_allow_ips` value for FORWARDED_ALLOW_IPS: `gateway` becomes
    the default gateway's address, `*` trusts every peer; every other entry must be an
    IP or a network (a typo
    must not silently trust the world). Empty trusts no one."""
    out: list[str] = []
    for raw in setting.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if entry == "*":  # everyone: only where nothing but the proxy can reach the app
            out.append(entry)
            continue
        if entry == GATEWAY:
            gw = default_gateway(route_table)
            if gw is None:
                raise ValueError("FORWARDED_ALLOW_IPS=gateway, but there is no default route")
            out.append(gw)
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(
                f"FORWARDED_ALLOW_IPS: {entry!r} is not an IP address, a network or 'gateway'"
            ) from None
        out.append(entry)
    return ",".join(out)
