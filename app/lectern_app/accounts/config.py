"""Account settings from the environment (kept apart from the library settings)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _bool(name: str, default: bool) -> bool:
    v = os.environ.get(name)
    if v is None or v.strip() == "":
        return default
    return v.strip().lower() in ("1", "true", "yes", "on")


def _int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class AccountSettings:
    database_url: str  # DATABASE_URL; default sqlite:///<DATA_DIR>/lectern.db (WAL)
    secret_key: str | None  # SECRET_KEY; None: generated once into <DATA_DIR>/secret_key (0600)
    auth_required: bool = False  # AUTH_REQUIRED: library pages/API/OPDS need a user
    auth_cache: bool = True  # ENABLE_AUTH_CACHE
    auth_cache_ttl: int = 300  # AUTH_CACHE_TTL (seconds)
    access_minutes: int = 30  # ACCESS_TOKEN_MINUTES
    refresh_days: int = 7  # REFRESH_TOKEN_DAYS
    # REFRESH_GRACE_SECONDS: a refresh token presented again this soon after its first use
    # gets the same successor (a browser's tabs refresh at once); later it ends the session
    refresh_grace: int = 30
    login_window: int = 300  # LOGIN_RATE_WINDOW (seconds)
    login_max_per_ip: int = 20  # LOGIN_MAX_PER_IP attempts per window
    login_max_per_account: int = 5  # LOGIN_MAX_PER_ACCOUNT failed attempts per window
    admin_username: str | None = None  # ADMIN_USERNAME (with ADMIN_PASSWORD[_FILE])
    admin_password: str | None = None  # ADMIN_PASSWORD or the file ADMIN_PASSWORD_FILE
    admin_email: str | None = None  # ADMIN_EMAIL
    kosync_registration: bool = False  # KOSYNC_REGISTRATION: KOReader may create users
    cookie_secure: bool = False  # COOKIE_SECURE: web session cookies only over HTTPS

    @classmethod
    def from_env(cls, data_dir: Path) -> AccountSettings:
        url = os.environ.get("DATABASE_URL", "").strip() or f"sqlite:///{data_dir / 'lectern.db'}"
        pw = os.environ.get("ADMIN_PASSWORD") or None
        pw_file = os.environ.get("ADMIN_PASSWORD_FILE", "").strip()
        if pw is None and pw_file:
            try:
                pw = Path(pw_file).read_text().rstrip("\n") or None
            except OSError:
                pw = None
        return cls(
            database_url=url,
            secret_key=os.environ.get("SECRET_KEY", "").strip() or None,
            auth_required=_bool("AUTH_REQUIRED", False),
            auth_cache=_bool("ENABLE_AUTH_CACHE", True),
            auth_cache_ttl=max(1, _int("AUTH_CACHE_TTL", 300)),
            access_minutes=max(1, _int("ACCESS_TOKEN_MINUTES", 30)),
            refresh_days=max(1, _int("REFRESH_TOKEN_DAYS", 7)),
            refresh_grace=min(300, max(0, _int("REFRESH_GRACE_SECONDS", 30))),
            login_window=max(1, _int("LOGIN_RATE_WINDOW", 300)),
            login_max_per_ip=max(1, _int("LOGIN_MAX_PER_IP", 20)),
            login_max_per_account=max(1, _int("LOGIN_MAX_PER_ACCOUNT", 5)),
            admin_username=os.environ.get("ADMIN_USERNAME", "").strip() or None,
            admin_password=pw,
            admin_email=os.environ.get("ADMIN_EMAIL", "").strip() or None,
            kosync_registration=_bool("KOSYNC_REGISTRATION", False),
            cookie_secure=_bool("COOKIE_SECURE", False),
        )
