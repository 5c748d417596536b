"""In-process auth cache: users by id, and verified credentials by a keyed hash.

A request with a JWT needs the user (disabled? role? token version?): with the cache on
that is a dict lookup, not a DB query. HTTP Basic (OPDS) and KOReader keys are verified
with argon2id once; the verified credential is remembered under
HMAC-SHA256(SECRET_KEY, kind, username, secret), never the secret itself, so repeated
requests skip the ~50 ms hash and run as fast as anonymous ones.

Changes take effect at once: every change to a user (disable, password, role, a
session signed out) goes
through `user_changed(user_id)`, which drops that user's entries from every cache in this
process and calls the hooks in `on_user_changed` (the Redis bus publishes there, and on a
message from another replica calls `invalidate_user(user_id)`; that one does NOT call the
hooks again, so there is no echo). Cached credentials also carry the user's token
version, so an entry left behind can never outlive a password change.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Called with the user id after any change that must end cached sessions/credentials
# (disable/enable, password reset or change, role change, deletion). Cross-replica
# invalidation (lectern_app.bus) appends its publisher here.
on_user_changed: list[Callable[[int], None]] = []

_caches: weakref.WeakSet[AuthCache] = weakref.WeakSet()


@dataclass(frozen=True, slots=True)
class Principal:
    id: int
    username: str
    email: str | None
    role: str
    disabled: bool
    token_version: int

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class AuthCache:
    """`epoch_file`: a file in DATA_DIR rewritten on every user change. Other workers of
    this host and the admin CLI share it, so each cache compares its (inode, mtime) on use
    (one stat, ~1 us) and starts over when it moved: a change made by another process
    on this host takes effect at once too. Other hosts hear it through on_user_changed.
    """

    def __init__(
        self,
        enabled: bool,
        ttl: float,
        max_entries: int = 20000,
        epoch_file: Path | None = None,
    ) -> None:
        self.enabled = enabled
        self.epoch_file = epoch_file
        self._epoch = self._read_epoch()
        self.ttl = ttl
        self.max_entries = max_entries
        self._users: dict[int, tuple[float, Principal]] = {}
        self._creds: dict[str, tuple[float, int, int]] = {}
        self._creds_of: dict[int, set[str]] = {}
        # session families (refresh-token families) known to be live, by user: an access
        # token is good only while its family is; signing out drops the entry everywhere
        self._families: dict[str, tuple[float, int]] = {}
        self._families_of: dict[int, set[str]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        _caches.add(self)

    def _read_epoch(self) -> tuple[int, int]:
        if self.epoch_file is None:
            return (0, 0)
        try:
            st = os.stat(self.epoch_file)
        except OSError:
            return (0, 0)
        return (st.st_ino, st.st_mtime_ns)

    def _fresh(self) -> None:
        if self.epoch_file is None:
            return
        e = self._read_epoch()
        if e != self._epoch:
            self._epoch = e
            self.clear()

    def bump_epoch(self) -> None:
        """Tell every process on this host that users changed (atomic replace)."""
        if self.epoch_file is None:
            return
        tmp = self.epoch_file.with_name(f".{self.epoch_file.name}.{os.getpid()}")
        try:
            tmp.write_text(f"{time.time_ns()}\n")
            os.replace(tmp, self.epoch_file)
        except OSError:
            return
        # this cache does NOT take the new epoch as seen: another worker may have bumped
        # it since this one last looked, and its change (a sign-out) must not be skipped.
        # The cost is one extra clear of this cache on its next use.

    def get_user(self, user_id: int) -> Principal | None:
        if not self.enabled:
            return None
        self._fresh()
        e = self._users.get(user_id)
        if e is None or e[0] < time.monotonic():
            self.misses += 1
            return None
        self.hits += 1
        return e[1]

    def put_user(self, p: Principal) -> None:
        if not self.enabled:
            return
        with self._lock:
            if len(self._users) >= self.max_entries:
                self._users.pop(next(iter(self._users)))
            self._users[p.id] = (time.monotonic() + self.ttl, p)

    def get_credential(self, key: str) -> tuple[int, int] | None:
        """(user_id, token_version) of a credential verified before, or None."""
        if not self.enabled:
            return None
        self._fresh()
        e = self._creds.get(key)
        if e is None or e[0] < time.monotonic():
            return None
        return e[1], e[2]

    def put_credential(self, key: str, user_id: int, version: int) -> None:
        if not self.enabled:
            return
        with self._lock:
            if len(self._creds) >= self.max_entries:
                old = next(iter(self._creds))
                _, uid, _ = self._creds.pop(old)
                self._creds_of.get(uid, set()).discard(old)
            self._creds[key] = (time.monotonic() + self.ttl, user_id, version)
            self._creds_of.setdefault(user_id, set()).add(key)

    def family_live(self, family: str) -> bool:
        """True when `family` was seen live and nothing about its user changed since."""
        if not self.enabled:
            return False
        self._fresh()
        e = self._families.get(family)
        return e is not None and e[0] >= time.monotonic()

    def put_family(self, family: str, user_id: int) -> None:
        if not self.enabled:
            return
        with self._lock:
            if len(self._families) >= self.max_entries:
                old = next(iter(self._families))
                _, uid = self._families.pop(old)
                self._families_of.get(uid, set()).discard(old)
            self._families[family] = (time.monotonic() + self.ttl, user_id)
            self._families_of.setdefault(user_id, set()).add(family)

    def drop_credential(self, key: str) -> None:
        with self._lock:
            e = self._creds.pop(key, None)
            if e is not None:
                self._creds_of.get(e[1], set()).discard(key)

    def invalidate_user(self, user_id: int) -> None:
        with self._lock:
            self._users.pop(user_id, None)
            for key in self._creds_of.pop(user_id, set()):
                self._creds.pop(key, None)
            for family in self._families_of.pop(user_id, set()):
                self._families.pop(family, None)

    def clear(self) -> None:
        with self._lock:
            self._users.clear()
            self._creds.clear()
            self._creds_of.clear()
            self._families.clear()
            self._families_of.clear()


def invalidate_user(user_id: int) -> None:
    """Drop one user's cached entries from every auth cache in this process."""
    for cache in list(_caches):
        cache.invalidate_user(user_id)


def user_changed(user_id: int) -> None:
    """A local change to a user: invalidate here, then tell the hooks (other replicas)."""
    invalidate_user(user_id)
    for hook in list(on_user_changed):
        try:
            hook(user_id)
        except Exception:  # a broken publisher must not break the change itself
            logging.getLogger("lectern.accounts").exception("on_user_changed hook failed")
