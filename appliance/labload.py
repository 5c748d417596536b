"""Client load on lab hosts through their TLS proxies: the proof that an update fails no
request (tests/infra/test_rollout.py and bench/release/bench.py share it).

Each host gets ``connections`` HTTPS clients paced to ``rate`` requests per second in
total. Clients keep their connection alive, as browsers and OPDS readers do, and every
``fresh_every``-th request opens a new TLS connection, so both new and reused connections
cross every upstream switch. A request fails when it gets no 200 in ``timeout`` seconds,
with one exception that browsers and HTTP libraries also retry (RFC 9112, 9.3.1): a reused
connection that the server closed before answering. That request is retried once on a new
connection and counted as ``retried``, not as failed; a failure on a new connection always
counts.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from dataclasses import dataclass, field

# The server closed a kept-alive connection before any answer: safe to resend a GET.
_CLOSED_BEFORE_ANSWER = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


@dataclass
class HostLoad:
    """What the clients of one host saw."""

    ok: int = 0
    retried: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.ok + len(self.failures)


class Load:
    """``with Load({"pi": (address, ca_pem)}, rate=60) as load: ...``, then ``load.hosts``."""

    def __init__(
        self,
        targets: dict[str, tuple[str, str]],
        rate: float = 60.0,
        connections: int = 4,
        fresh_every: int = 10,
        path: str = "/api/books?per_page=5",
        timeout: float = 10.0,
    ) -> None:
        self.targets = targets
        self.interval = connections / rate  # seconds between one client's requests
        self.fresh_every = fresh_every
        self.path = path
        self.timeout = timeout
        self.hosts = {name: HostLoad() for name in targets}
        self.contexts = {
            name: ssl.create_default_context(cadata=ca) for name, (_, ca) in targets.items()
        }
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._client, args=(name,), daemon=True)
            for name in targets
            for _ in range(connections)
        ]
        self.started = 0.0
        self.seconds = 0.0

    def rate(self, name: str) -> float:
        """Answered requests per second for ``name`` over the whole run."""
        return self.hosts[name].ok / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return ", ".join(
            f"{name}: {self.rate(name):.0f} req/s, {len(h.failures)}/{h.total} failed,"
            f" {h.retried} retried"
            for name, h in self.hosts.items()
        )

    def _connect(self, name: str) -> http.client.HTTPSConnection:
        address = self.targets[name][0]  # "ip" (port 443) or "ip:port"
        return http.client.HTTPSConnection(
            address, timeout=self.timeout, context=self.contexts[name]
        )

    def _get(self, connection: http.client.HTTPSConnection) -> int:
        connection.request("GET", self.path)
        response = connection.getresponse()
        response.read()
        if response.will_close:
            connection.close()  # the next request reconnects (http.client does it)
        return response.status

    def _client(self, name: str) -> None:
        stats = self.hosts[name]
        connection = self._connect(name)
        served = 0  # requests answered on this connection
        due = time.monotonic()
        while not self.stop.is_set():
            due += self.interval
            if served >= self.fresh_every:
                connection.close()
                connection, served = self._connect(name), 0
            reason = ""
            retried = False
            try:
                try:
                    status = self._get(connection)
                except _CLOSED_BEFORE_ANSWER:
                    if served == 0:
                        raise
                    connection.close()
                    connection, served, retried = self._connect(name), 0, True
                    status = self._get(connection)
                served += 1
                if status != 200:
                    reason = f"HTTP {status}"
            except Exception as exc:  # every failure a client would see counts
                reason = repr(exc)[:160]
                connection.close()
                connection, served = self._connect(name), 0
            with self.lock:
                stats.retried += retried
                if reason:
                    stats.failures.append(reason)
                else:
                    stats.ok += 1
            pause = due - time.monotonic()
            if pause > 0:
                self.stop.wait(pause)
            else:
                due = time.monotonic()  # behind: no burst to catch up
        connection.close()

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        self.seconds = time.monotonic() - self.started
