"""Secret key, argon2id password hashes, JWT access/refresh tokens, keyed hashes."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ISSUER = "lectern"
AUD_ACCESS = "lectern:access"
AUD_REFRESH = "lectern:refresh"
ALGORITHM = "HS256"
# argon2id with OWASP's minimum profile (m=19 MiB, t=2, p=1): ~50-90 ms on a Pi-class or
# loaded 2-core machine. The library's default (64 MiB, p=4) took 0.6 s here, which turns
# a burst of logins into a denial of service on a Raspberry Pi.
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
_dummy: list[str] = []  # a real hash to spend the same time on for unknown users


def load_secret_key(data_dir: Path, given: str | None) -> str:
    """SECRET_KEY if given, else the one generated on first start into DATA_DIR (0600)."""
    if given:
        return given
    path = data_dir / "secret_key"
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another worker is writing it right now
            key = path.read_text().strip()
            if key:
                return key
            time.sleep(0.05)
        raise RuntimeError(f"{path} is empty") from None
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    os.chmod(path, 0o600)
    return key


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    if not stored:
        _burn(password)
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _burn(password: str) -> None:
    if not _dummy:  # made on first use, not at import (startup time)
        _dummy.append(_hasher.hash(secrets.token_hex(16)))
    with contextlib.suppress(VerifyMismatchError, VerificationError, InvalidHashError):
        _hasher.verify(_dummy[0], password)


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # KOReader's key; never stored as is


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def keyed_hash(secret: str, *parts: str) -> str:
    """HMAC-SHA256 over parts: cache keys for verified credentials (never the password)."""
    msg = "\x00".join(parts).encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def csrf_token(secret: str, session: str) -> str:
    """The form token of one session (a refresh family, or the pre-login nonce cookie)."""
    return keyed_hash(secret, "csrf", session)


def new_api_token() -> str:
    return "lct_" + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class TokenPair:
    access: str
    refresh: str
    refresh_jti: str
    family: str
    access_expires_in: int
    refresh_issued_at: int
    refresh_expires_at: int


class TokenError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Tokens:
    def __init__(self, secret: str, access_seconds: int, refresh_seconds: int) -> None:
        self.secret = secret
        self.access_seconds = access_seconds
        self.refresh_seconds = refresh_seconds

    def issue(
        self,
        user_id: int,
        version: int,
        family: str | None = None,
        *,
        refresh_jti: str | None = None,
        refresh_iat: int | None = None,
        refresh_exp: int | None = None,
    ) -> TokenPair:
        """A new access token and a refresh token. The refresh token's jti/iat/exp may be
        given: the same claims give the same token (HS256 is deterministic), which is how
        requests racing with one refresh token all receive its one successor."""
        now = int(time.time())
        family = family or uuid.uuid4().hex
        jti = refresh_jti or uuid.uuid4().hex
        iat = refresh_iat if refresh_iat is not None else now
        exp = refresh_exp if refresh_exp is not None else now + self.refresh_seconds
        access = jwt.encode(
            {
                "iss": ISSUER,
                "aud": AUD_ACCESS,
                "sub": str(user_id),
                "ver": version,
                "fam": family,  # signing out ends the family, and with it this token
                "iat": now,
                "exp": now + self.access_seconds,
                "jti": uuid.uuid4().hex,
            },
            self.secret,
            algorithm=ALGORITHM,
        )
        refresh = jwt.encode(
            {
                "iss": ISSUER,
                "aud": AUD_REFRESH,
                "sub": str(user_id),
                "ver": version,
                "fam": family,
                "iat": iat,
                "exp": exp,
                "jti": jti,
            },
            self.secret,
            algorithm=ALGORITHM,
        )
        return TokenPair(access, refresh, jti, family, self.access_seconds, iat, exp)

    def successor_jti(self, jti: str) -> str:
        """The jti of the refresh token that replaces `jti`: derived, so a request that
        lost the race for `jti` can find (and re-mint) what the winner received."""
        return keyed_hash(self.secret, "successor", jti)[:32]

    def decode(self, token: str, audience: str) -> dict[str, Any]:
        """Verify signature (HS256 only: alg=none and others are refused), exp, aud, iss."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                audience=audience,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "aud", "iss", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token_expired") from None
        except jwt.InvalidAudienceError:
            raise TokenError("wrong_audience") from None
        except jwt.PyJWTError:
            raise TokenError("invalid_token") from None
        if not str(claims.get("sub", "")).isdigit() or not isinstance(claims.get("ver"), int):
            raise TokenError("invalid_token")
        if not isinstance(claims.get("fam"), str) or not claims["fam"]:
            raise TokenError("invalid_token")  # every token belongs to a session family
        return claims
