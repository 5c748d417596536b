"""A message bus between app replicas: `publish(channel, payload)` / `subscribe(channel, fn)`.

Every subscriber of a channel in every replica gets every message, including the
subscribers of the publishing process (delivered synchronously, inside `publish`).
Without REDIS_URL the bus is in-process only (`Bus`); with it (`RedisBus`) messages also
travel over Redis pub/sub (channel `lectern:<channel>`, JSON payloads) and a listener
thread delivers the other replicas' messages. Messages a replica misses while Redis is
unreachable are not replayed: `on_reconnect` callbacks run after every reconnection so
that subscribers can drop whatever they cache (the library re-checks its files, the auth
cache empties).

Payloads are small JSON objects (ids, fingerprints), never secrets: Redis pub/sub is
readable by anyone who can connect to that Redis.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

log = logging.getLogger("lectern.bus")

Handler = Callable[[dict[str, Any]], None]
PREFIX = "lectern:"


class Bus:
    """In-process bus (no Redis): publish delivers to this process's subscribers."""

    kind = "local"

    def __init__(self) -> None:
        self.instance = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._handlers: dict[str, list[Handler]] = {}
        self._reconnect: list[Callable[[], None]] = []
        self.published = 0
        self.received = 0  # messages from other replicas
        self.errors = 0
        self.last_received: float = 0.0
        self.on_message: Callable[[str, str], None] | None = None  # (channel, direction)

    def subscribe(self, channel: str, handler: Handler) -> None:
        self._handlers.setdefault(channel, []).append(handler)

    def on_reconnect(self, fn: Callable[[], None]) -> None:
        self._reconnect.append(fn)

    def publish(self, channel: str, payload: dict[str, Any]) -> None:
        self.published += 1
        if self.on_message:
            self.on_message(channel, "published")
        self._deliver(channel, payload)

    def _deliver(self, channel: str, payload: dict[str, Any]) -> None:
        for fn in list(self._handlers.get(channel, ())):
            try:
                fn(payload)
            except Exception:
                log.exception("bus handler for %s failed", channel)

    @property
    def connected(self) -> bool:
        return True

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"kind": self.kind, "connected": self.connected}


class RedisBus(Bus):
    """Redis pub/sub between replicas; a listener thread and a publisher thread."""

    kind = "redis"

    def __init__(self, url: str, reconnect_delay: float = 0.2) -> None:
        super().__init__()
        import redis

        self._redis = redis.Redis.from_url(
            url, socket_timeout=2.0, socket_connect_timeout=1.0, health_check_interval=10
        )
        self._delay = reconnect_delay
        self._stop = threading.Event()
        self._out: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=10000)
        self._connected = False
        self._ever_connected = False
        self.last_error: str | None = None
        self._listener = threading.Thread(target=self._listen, name="lectern-bus-in", daemon=True)
        self._publisher = threading.Thread(
            target=self._publish_loop, name="lectern-bus-out", daemon=True
        )
        self._subscribed = threading.Event()

    # ------------------------------------------------------------------ API
    def publish(self, channel: str, payload: dict[str, Any]) -> None:
        super().publish(channel, payload)  # this replica's subscribers, at once
        data = json.dumps({"from": self.instance, "payload": payload}, separators=(",", ":"))
        try:
            self._out.put_nowait((PREFIX + channel, data.encode()))
        except queue.Full:
            self.errors += 1
            log.error("bus: outgoing queue full, dropped a %s message", channel)

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self) -> None:
        self._listener.start()
        self._publisher.start()

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        self._out.put(None)
        for t in (self._listener, self._publisher):
            if t.is_alive():
                t.join(timeout=3)
        self._redis.close()

    def status(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "connected": self._connected,
            "published": self.published,
            "received": self.received,
            "errors": self.errors,
            "last_error": self.last_error,
        }

    # -------------------------------------------------------------- threads
    def _publish_loop(self) -> None:
        while True:
            item = self._out.get()
            if item is None:
                return
            channel, data = item
            for attempt in range(3):
                try:
                    self._redis.publish(channel, data)
                    break
                except Exception as e:  # redis.RedisError, OSError
                    self.errors += 1
                    self.last_error = type(e).__name__
                    if attempt == 2 or self._stop.is_set():
                        log.warning("bus: could not publish to %s: %s", channel, type(e).__name__)
                        break
                    time.sleep(0.1 * (attempt + 1))

    def _listen(self) -> None:
        while not self._stop.is_set():
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            try:
                pubsub.psubscribe(PREFIX + "*")
                first = not self._ever_connected
                self._connected = True
                self._ever_connected = True
                self._subscribed.set()
                if not first:
                    log.warning("bus: reconnected to Redis; dropping cached state")
                    for fn in list(self._reconnect):
                        try:
                            fn()
                        except Exception:
                            log.exception("bus reconnect hook failed")
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=1.0)
                    if msg is not None and msg.get("type") == "pmessage":
                        self._receive(msg)
            except Exception as e:  # redis.ConnectionError, TimeoutError, OSError
                if self._connected:
                    log.warning("bus: lost Redis (%s); retrying", type(e).__name__)
                self._connected = False
                self.last_error = type(e).__name__
                self._stop.wait(self._delay)
            finally:
                with contextlib.suppress(Exception):  # closing a dead connection
                    pubsub.close()
        self._connected = False

    def _receive(self, msg: dict[str, Any]) -> None:
        channel = msg["channel"]
        if isinstance(channel, bytes):
            channel = channel.decode()
        try:
            data = json.loads(msg["data"])
        except (ValueError, TypeError):
            log.warning("bus: ignored a malformed message on %s", channel)
            return
        if not isinstance(data, dict) or data.get("from") == self.instance:
            return  # our own message: local subscribers already had it
        payload = data.get("payload")
        if not isinstance(payload, dict):
            return
        name = channel[len(PREFIX) :]
        self.received += 1
        self.last_received = time.time()
        if self.on_message:
            self.on_message(name, "received")
        self._deliver(name, payload)


def make_bus(redis_url: str | None) -> Bus:
    return RedisBus(redis_url) if redis_url else Bus()
