"""One wrk run, parsed: the HTTP load of the app, auth and storage benchmarks."""

from __future__ import annotations

import re
import subprocess
from typing import Any

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def wrk(url: str, conns: int, duration: int, header: str | None = None) -> dict[str, Any]:
    """req/s, p50/p99 latency (ms), non-2xx/3xx answers, socket timeouts, requests."""
    cmd = ["wrk", "-t2", f"-c{conns}", f"-d{duration}s", "--timeout", "30s", "--latency"]
    if header:
        cmd += ["-H", header]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    res: dict[str, Any] = {"url": url, "c": conns}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        res[f"p{pct}_ms"] = _ms(m.group(1)) if m else float("nan")
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: .*timeout (\d+)", out)
    res["timeouts"] = int(m.group(1)) if m else 0
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = int(m.group(1)) if m else 0
    return res
