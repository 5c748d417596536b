"""What replicas tell each other over the bus (bus.py).

- `library`: a replica loaded a changed library -> the others re-check their files at
  once (before their next request) and drop their in-process responses. Reloads caused
  by such a message are not announced again (no echo).
- `user`: a user was disabled, changed password, role, ... (accounts.authcache hooks)
  -> every replica drops that user's cached principal and credentials.
- `covers`: `python -m lectern_app covers upload` changed the bucket -> replicas re-read
  the S3 cover manifest.

After a reconnection to Redis (messages may have been missed) a replica re-checks its
library and empties its auth caches.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .library import Library

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger("lectern.replicas")


class Replicas:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._local = threading.local()
        self._user_hook: Callable[[int], None] | None = None
        self.library_reloads = 0
        bus = svc.bus
        bus.on_message = self._count
        bus.subscribe("library", self._on_library)
        bus.subscribe("covers", self._on_covers)
        bus.on_reconnect(self._resync)
        if bus.kind != "local":
            self._wire_users()

    # --------------------------------------------------------------- library
    def library_changed(self, lib: Library) -> None:
        if getattr(self._local, "from_bus", False):
            return  # this reload was caused by another replica's message
        self.svc.bus.publish(
            "library",
            {
                "library_id": lib.library_id,
                "fingerprint": self.svc.fingerprint(lib),
                "books": len(lib.books),
            },
        )

    def _on_library(self, payload: dict[str, Any]) -> None:
        cur = self.svc.state.current
        if cur is not None and payload.get("fingerprint") == self.svc.fingerprint(cur):
            return  # already on that snapshot (includes our own message)
        self._refresh()

    def _refresh(self) -> None:
        before = self.svc.state.version
        self._local.from_bus = True
        try:
            self.svc.state.refresh()
        finally:
            self._local.from_bus = False
        if self.svc.state.version != before:
            self.library_reloads += 1  # this replica learnt of the change from the bus

    # ---------------------------------------------------------------- covers
    def _on_covers(self, payload: dict[str, Any]) -> None:
        self.svc.storage.covers_changed(payload)

    # ----------------------------------------------------------------- users
    def _wire_users(self) -> None:
        try:
            from .accounts import authcache
        except ImportError:  # pragma: no cover - accounts not part of this build
            return

        def publish(user_id: int) -> None:
            self.svc.bus.publish("user", {"id": int(user_id)})

        def receive(payload: dict[str, Any]) -> None:
            uid = payload.get("id")
            if isinstance(uid, int):
                authcache.invalidate_user(uid)

        authcache.on_user_changed.append(publish)
        self._user_hook = publish
        self.svc.bus.subscribe("user", receive)

    def _clear_auth(self) -> None:
        try:
            from .accounts import authcache
        except ImportError:  # pragma: no cover
            return
        for cache in list(authcache._caches):
            cache.clear()

    # ------------------------------------------------------------- reconnect
    def _resync(self) -> None:
        self._clear_auth()
        self._refresh()
        self.svc.storage.covers_changed({})

    def _count(self, channel: str, direction: str) -> None:
        self.svc.storage.metrics.bus_messages.labels(channel, direction).inc()

    def close(self) -> None:
        if self._user_hook is not None:
            try:
                from .accounts import authcache

                authcache.on_user_changed.remove(self._user_hook)
            except (ImportError, ValueError):  # pragma: no cover
                pass
            self._user_hook = None
