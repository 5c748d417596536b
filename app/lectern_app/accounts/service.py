"""Accounts facade: users, login/refresh/logout, credential checks, admin operations."""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import security
from .authcache import AuthCache, Principal, user_changed
from .config import AccountSettings
from .db import Database
from .models import ApiToken, RefreshToken, User, utcnow
from .ratelimit import SlidingWindow
from .security import TokenError, TokenPair, Tokens

log = logging.getLogger("lectern.accounts")
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}$")
MIN_PASSWORD = 8
ROLES = ("admin", "user")


class AccountError(Exception):
    """An expected refusal: HTTP status, machine-readable code, message, extra headers."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def principal_of(u: User) -> Principal:
    return Principal(u.id, u.username, u.email, u.role, bool(u.disabled), u.token_version)


def user_dict(u: User) -> dict[str, Any]:
    return {
        "id": u.id,
        "username": u.username,
        "email": u.email,
        "role": u.role,
        "disabled": bool(u.disabled),
        "created_at": _iso(u.created_at),
        "kosync": u.kosync_key_hash is not None,
    }


def _aware(d: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return d if d.tzinfo is not None else d.replace(tzinfo=UTC)


def _iso(d: datetime | None) -> str | None:
    if d is None:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return d.isoformat()


class Accounts:
    def __init__(self, settings: AccountSettings, data_dir: Path) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.db = Database(settings.database_url)
        self.cache = AuthCache(
            settings.auth_cache, settings.auth_cache_ttl, epoch_file=data_dir / "auth-epoch"
        )
        self.secret = ""
        self.tokens: Tokens | None = None
        self.ip_limiter = SlidingWindow(settings.login_max_per_ip, settings.login_window)
        self.account_limiter = SlidingWindow(settings.login_max_per_account, settings.login_window)
        # failed HTTP Basic / KOReader credential checks per client IP
        self.fail_limiter = SlidingWindow(settings.login_max_per_ip, settings.login_window)
        # access JWT -> exp, uid, ver, session family
        self._verified: dict[str, tuple[float, int, int, str]] = {}
        self.started = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self.started:
            return
        self.secret = security.load_secret_key(self.data_dir, self.settings.secret_key)
        self.tokens = Tokens(
            self.secret, self.settings.access_minutes * 60, self.settings.refresh_days * 86400
        )
        self.db.migrate()
        with self.db.startup_lock():  # workers starting together: one creates the admin
            self._bootstrap_admin()
        self.prune()
        self.started = True

    def prune(self) -> int:
        """Forget refresh tokens past their expiry (they can no longer be presented)."""
        with self.db.session() as db:
            n = db.execute(  # type: ignore[attr-defined]
                delete(RefreshToken).where(RefreshToken.expires_at < utcnow())
            ).rowcount
        return int(n or 0)

    def close(self) -> None:
        self.db.dispose()

    def _bootstrap_admin(self) -> None:
        s = self.settings
        with self.db.session() as db:
            n = db.scalar(select(func.count()).select_from(User)) or 0
            if s.admin_username and s.admin_password:
                if self._find(db, s.admin_username) is None:
                    self._create(db, s.admin_username, s.admin_password, s.admin_email, "admin")
                    log.info("created admin user %s from the environment", s.admin_username)
                return
            if s.admin_username:
                log.warning("ADMIN_USERNAME is set without ADMIN_PASSWORD(_FILE): not created")
            if n == 0:
                log.warning(
                    "no users yet: create an admin with "
                    "`python -m lectern_app admin create-user NAME --admin`"
                )

    @property
    def tok(self) -> Tokens:
        assert self.tokens is not None, "Accounts.start() was not called"
        return self.tokens

    # ------------------------------------------------------------------ lookups
    @staticmethod
    def _find(db: Session, identifier: str) -> User | None:
        ident = identifier.strip().lower()
        if not ident:
            return None
        return db.scalars(
            select(User).where(
                or_(func.lower(User.username) == ident, func.lower(User.email) == ident)
            )
        ).first()

    def principal(self, user_id: int) -> Principal | None:
        p = self.cache.get_user(user_id)
        if p is not None:
            return p
        with self.db.session() as db:
            u = db.get(User, user_id)
            if u is None:
                return None
            p = principal_of(u)
        self.cache.put_user(p)
        return p

    # ------------------------------------------------------------------ users
    def _create(
        self, db: Session, username: str, password: str | None, email: str | None, role: str
    ) -> User:
        username = username.strip()
        if not USERNAME.match(username):
            raise AccountError(422, "invalid_username", "username: 1-64 of A-Z a-z 0-9 . _ @ + -")
        if email is not None:
            email = email.strip() or None
        if email is not None and not EMAIL.match(email):
            raise AccountError(422, "invalid_email", "not an email address")
        if role not in ROLES:
            raise AccountError(422, "invalid_role", f"role must be one of {ROLES}")
        if self._find(db, username) is not None or (email and self._find(db, email)):
            raise AccountError(409, "user_exists", "a user with that name or email exists")
        now = utcnow()
        u = User(
            username=username,
            email=email,
            role=role,
            disabled=False,
            token_version=0,
            created_at=now,
            updated_at=now,
        )
        if password is not None:
            self._set_password(u, password)
        db.add(u)
        try:
            db.flush()
        except IntegrityError:
            raise AccountError(
                409, "user_exists", "a user with that name or email exists"
            ) from None
        return u

    @staticmethod
    def _set_password(u: User, password: str) -> None:
        if len(password) < MIN_PASSWORD or len(password) > 1024:
            raise AccountError(
                422, "weak_password", f"passwords need {MIN_PASSWORD} to 1024 characters"
            )
        u.password_hash = security.hash_password(password)
        u.kosync_key_hash = security.hash_password(security.md5_hex(password))
        u.token_version = (u.token_version or 0) + 1
        u.updated_at = utcnow()

    def create_user(
        self, username: str, password: str | None, email: str | None = None, role: str = "user"
    ) -> dict[str, Any]:
        with self.db.session() as db:
            u = self._create(db, username, password, email, role)
            return user_dict(u)

    def list_users(self) -> list[dict[str, Any]]:
        with self.db.session() as db:
            return [user_dict(u) for u in db.scalars(select(User).order_by(User.id))]

    def get_user(self, user_id: int) -> dict[str, Any]:
        with self.db.session() as db:
            u = db.get(User, user_id)
            if u is None:
                raise AccountError(404, "not_found", f"no user {user_id}")
            return user_dict(u)

    def update_user(
        self,
        user_id: int,
        *,
        disabled: bool | None = None,
        role: str | None = None,
        password: str | None = None,
        email: str | None = None,
        actor: int | None = None,
        keep_tokens: bool = False,
    ) -> dict[str, Any]:
        """A new password ends every session and, unless keep_tokens, revokes every API
        token too: a reset usually follows a compromise. The result says how many."""
        revoked_tokens = 0
        with self.db.session() as db:
            u = db.get(User, user_id)
            if u is None:
                raise AccountError(404, "not_found", f"no user {user_id}")
            if actor == user_id and (disabled or (role is not None and role != "admin")):
                raise AccountError(
                    409, "self_lockout", "admins cannot disable or demote themselves"
                )
            changed = False
            if role is not None and role != u.role:
                if role not in ROLES:
                    raise AccountError(422, "invalid_role", f"role must be one of {ROLES}")
                u.role = role
                changed = True
            if disabled is not None and bool(disabled) != bool(u.disabled):
                u.disabled = bool(disabled)
                changed = True
            if password is not None:
                self._set_password(u, password)
                self._revoke_all_refresh(db, u.id)
                if not keep_tokens:
                    revoked_tokens = self._revoke_all_api_tokens(db, u.id)
                changed = True
            if email is not None:
                e = email.strip() or None
                if e is not None and not EMAIL.match(e):
                    raise AccountError(422, "invalid_email", "not an email address")
                if e is not None:
                    other = self._find(db, e)
                    if other is not None and other.id != u.id:
                        raise AccountError(409, "user_exists", "that email is taken")
                u.email = e
            if changed:
                u.token_version = (u.token_version or 0) + (0 if password is not None else 1)
                u.updated_at = utcnow()
                if u.disabled:
                    self._revoke_all_refresh(db, u.id)
            result = user_dict(u)
        if password is not None:
            result["revoked_api_tokens"] = revoked_tokens
        if changed:
            self.notify(user_id)
        return result

    def change_own_password(
        self, user_id: int, old: str, new: str, keep_tokens: bool = False
    ) -> dict[str, Any]:
        with self.db.session() as db:
            u = db.get(User, user_id)
            if u is None or not security.verify_password(u.password_hash, old):
                raise AccountError(403, "wrong_password", "the current password is wrong")
        return self.update_user(user_id, password=new, keep_tokens=keep_tokens)

    @staticmethod
    def _revoke_all_refresh(db: Session, user_id: int) -> None:
        db.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )

    @staticmethod
    def _revoke_all_api_tokens(db: Session, user_id: int) -> int:
        n = db.execute(  # type: ignore[attr-defined]
            update(ApiToken)
            .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        ).rowcount
        return int(n or 0)

    # ------------------------------------------------------------------ login
    def login(self, identifier: str, password: str, ip: str) -> tuple[TokenPair, Principal]:
        ident = identifier.strip().lower()[:255]
        wait = max(
            self.ip_limiter.retry_after(ip), self.account_limiter.retry_after("acct:" + ident)
        )
        if wait:
            raise AccountError(
                429,
                "too_many_attempts",
                "too many login attempts; try again later",
                {"Retry-After": str(wait)},
            )
        with self.db.session() as db:
            u = self._find(db, ident)
            ok = security.verify_password(u.password_hash if u else None, password)
            if (
                u is not None
                and not ok
                and u.password_hash is None
                and u.kosync_key_hash
                # registered from KOReader (only the md5 key is known): the first web
                # login with the password whose md5 is that key adopts it
                and security.verify_password(u.kosync_key_hash, security.md5_hex(password))
            ):
                self._set_password(u, password)
                ok = True
            if u is None or not ok:
                # failures only: a household behind one NAT signing in all day is not an attack
                self.ip_limiter.hit(ip)
                self.account_limiter.hit("acct:" + ident)
                raise AccountError(401, "invalid_credentials", "wrong username or password")
            if u.disabled:
                raise AccountError(403, "user_disabled", "this account is disabled")
            p = principal_of(u)
            pair = self._issue(db, p)
        self.account_limiter.reset("acct:" + ident)
        self.cache.put_user(p)
        return pair, p

    def _issue(
        self, db: Session, p: Principal, family: str | None = None, jti: str | None = None
    ) -> TokenPair:
        pair = self.tok.issue(p.id, p.token_version, family, refresh_jti=jti)
        db.add(
            RefreshToken(
                jti=pair.refresh_jti,
                user_id=p.id,
                family=pair.family,
                issued_at=datetime.fromtimestamp(pair.refresh_issued_at, UTC),
                expires_at=datetime.fromtimestamp(pair.refresh_expires_at, UTC),
            )
        )
        self.cache.put_family(pair.family, p.id)
        return pair

    def refresh(self, token: str) -> tuple[TokenPair, Principal]:
        """Rotate a refresh token. Each token is used once; a second presentation within
        REFRESH_GRACE_SECONDS of the first (several tabs whose access cookie expired at
        the same moment) gets the same successor, a later one is a replay: the whole
        family (every device of that sign-in) ends, access tokens included."""
        try:
            claims = self.tok.decode(token, security.AUD_REFRESH)
        except TokenError as e:
            raise AccountError(401, e.reason, "refresh token refused") from None
        jti, uid = str(claims["jti"]), int(claims["sub"])
        with self.db.session() as db:
            self._lock_user(db, uid)
            row = db.get(RefreshToken, jti)
            if row is None or row.user_id != uid:
                raise AccountError(401, "invalid_token", "unknown refresh token")
            family = row.family
            # atomic: of two requests racing with one token, exactly one wins
            won = db.execute(  # type: ignore[attr-defined]
                update(RefreshToken)
                .where(
                    RefreshToken.jti == jti,
                    RefreshToken.used_at.is_(None),
                    RefreshToken.revoked_at.is_(None),
                )
                .values(used_at=utcnow())
            ).rowcount
            db.refresh(row)  # what the winner (maybe another request) left
            u = db.get(User, uid)
            p = principal_of(u) if u is not None else None
            pair: TokenPair | None = None
            outcome = "ok"
            if u is None or p is None or u.disabled or u.token_version != claims["ver"]:
                outcome = "revoked"
            elif won == 1:
                pair = self._issue(db, p, family, self.tok.successor_jti(jti))
            else:
                pair = self._successor_in_grace(db, row, u)
                if pair is None:
                    outcome = "revoked" if row.revoked_at is not None else "reused"
            ended = 0
            if outcome != "ok":
                # a spent token came back (someone holds a copy), or the user changed:
                # end the whole family
                ended = self._end_family(db, family)
        if ended:
            self.notify(uid)  # the family's access tokens end now, on every worker
        if outcome == "reused":
            log.warning("refresh token reuse for user %s: family revoked", uid)
            raise AccountError(401, "refresh_reused", "refresh token reuse: all sessions ended")
        if outcome == "revoked":
            raise AccountError(401, "token_revoked", "sign in again")
        assert pair is not None and p is not None
        return pair, p

    @staticmethod
    def _lock_user(db: Session, user_id: int) -> None:
        """Serialise the session changes of one user (PostgreSQL; SQLite has one writer
        anyway): a sign-out racing a refresh must also see, and end, the successor the
        refresh inserts."""
        db.execute(select(User.id).where(User.id == user_id).with_for_update())

    @staticmethod
    def _end_family(db: Session, family: str) -> int:
        n = db.execute(  # type: ignore[attr-defined]
            update(RefreshToken)
            .where(RefreshToken.family == family, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        ).rowcount
        return int(n or 0)

    def _successor_in_grace(self, db: Session, row: RefreshToken, u: User) -> TokenPair | None:
        """The live refresh token the winner of a refresh race received (re-minted), if
        every step from `row` to it was taken less than the grace window ago: a tab whose
        duplicate request arrives after the winner already refreshed again still lands
        on the newest token, not on a spent one."""
        oldest = utcnow() - timedelta(seconds=self.settings.refresh_grace)
        nxt: RefreshToken | None = row
        for _ in range(4):
            assert nxt is not None
            if nxt.revoked_at is not None or nxt.used_at is None:
                return None
            if _aware(nxt.used_at) < oldest:
                return None
            step = db.get(RefreshToken, self.tok.successor_jti(nxt.jti))
            if step is None or step.revoked_at is not None or step.family != row.family:
                return None
            nxt = step
            if nxt.used_at is None:
                break
        else:
            return None
        return self.tok.issue(
            u.id,
            u.token_version,
            row.family,
            refresh_jti=nxt.jti,
            refresh_iat=int(_aware(nxt.issued_at).timestamp()),
            refresh_exp=int(_aware(nxt.expires_at).timestamp()),
        )

    def logout(self, token: str) -> None:
        """End the sign-in this refresh token belongs to: its refresh tokens and, at once
        (here, on the host's other workers and on other replicas), its access tokens."""
        try:
            claims = self.tok.decode(token, security.AUD_REFRESH)
        except TokenError:
            return
        uid = int(claims["sub"])
        with self.db.session() as db:
            self._lock_user(db, uid)
            row = db.get(RefreshToken, str(claims["jti"]))
            if row is None or row.user_id != uid:
                return
            ended = self._end_family(db, row.family)
        if ended:  # signing out twice clears no cache twice
            self.notify(uid)

    def family_live(self, user_id: int, family: str) -> bool:
        """Is this sign-in still live (not signed out, not ended by a replay)?"""
        if self.cache.family_live(family):
            return True
        with self.db.session() as db:
            live = (
                db.scalar(
                    select(RefreshToken.jti)
                    .where(
                        RefreshToken.family == family,
                        RefreshToken.user_id == user_id,
                        RefreshToken.revoked_at.is_(None),
                    )
                    .limit(1)
                )
                is not None
            )
        if live:
            self.cache.put_family(family, user_id)
        return live

    # ------------------------------------------------------------------ request credentials
    # fast paths: cache only, no DB, no password hash; None means "ask the slow path"
    def cached_access(self, token: str) -> tuple[Principal, str] | None:
        """(user, session family) of an access token, from the caches only."""
        if not self.cache.enabled:
            return None
        # a token verified before (signature, aud, iss) is looked up by its exact text
        # until it expires: no JSON parse, no HMAC. The user's state and the session's
        # are checked every time.
        seen = self._verified.get(token)
        if seen is not None and seen[0] > time.time():
            uid, ver, family = seen[1], seen[2], seen[3]
        else:
            try:
                claims = self.tok.decode(token, security.AUD_ACCESS)
            except TokenError:
                return None
            uid, ver, family = int(claims["sub"]), int(claims["ver"]), str(claims["fam"])
            if len(self._verified) >= 20000:
                self._verified.clear()
            self._verified[token] = (float(claims["exp"]), uid, ver, family)
        p = self.cache.get_user(uid)
        if p is None or p.disabled or p.token_version != ver:
            return None
        if not self.cache.family_live(family):
            return None
        return p, family

    def cached_password(
        self, username: str, password: str, kind: str = "basic"
    ) -> Principal | None:
        if not self.cache.enabled:
            return None
        if password.startswith("lct_") and kind == "basic":
            p = self.cached_api_token(password)
            return p if p is not None and p.username.lower() == username.strip().lower() else None
        key = security.keyed_hash(self.secret, kind, username.strip().lower(), password)
        hit = self.cache.get_credential(key)
        if hit is None:
            return None
        p = self.cache.get_user(hit[0])
        if p is None or p.disabled or p.token_version != hit[1]:
            return None
        return p

    def cached_api_token(self, token: str) -> Principal | None:
        if not self.cache.enabled:
            return None
        hit = self.cache.get_credential(security.keyed_hash(self.secret, "token", token))
        if hit is None:
            return None
        p = self.cache.get_user(hit[0])
        return None if p is None or p.disabled else p

    def from_access_token(self, token: str) -> tuple[Principal, str]:
        """(user, session family) of an access token; refused once the session ended."""
        try:
            claims = self.tok.decode(token, security.AUD_ACCESS)
        except TokenError as e:
            raise AccountError(401, e.reason, "access token refused") from None
        p = self.principal(int(claims["sub"]))
        if p is None or p.disabled:
            raise AccountError(401, "user_disabled", "the user is disabled or gone")
        if p.token_version != claims["ver"]:
            raise AccountError(401, "token_revoked", "sign in again")
        family = str(claims["fam"])
        if not self.family_live(p.id, family):
            raise AccountError(401, "session_ended", "signed out: sign in again")
        return p, family

    def from_password(self, username: str, password: str, kind: str = "basic") -> Principal | None:
        """HTTP Basic (kind basic) or KOReader key (kind kosync): verified once, then cached."""
        if password.startswith("lct_") and kind == "basic":
            p = self.from_api_token(password)
            return p if p is not None and p.username.lower() == username.strip().lower() else None
        key = security.keyed_hash(self.secret, kind, username.strip().lower(), password)
        hit = self.cache.get_credential(key)
        if hit is not None:
            p = self.principal(hit[0])
            if p is not None and not p.disabled and p.token_version == hit[1]:
                return p
            self.cache.drop_credential(key)
        with self.db.session() as db:
            u = self._find(db, username)
            stored = (
                None if u is None else (u.password_hash if kind == "basic" else u.kosync_key_hash)
            )
            if not security.verify_password(stored, password) or u is None or u.disabled:
                return None
            p = principal_of(u)
        self.cache.put_user(p)
        self.cache.put_credential(key, p.id, p.token_version)
        return p

    def from_api_token(self, token: str) -> Principal | None:
        key = security.keyed_hash(self.secret, "token", token)
        hit = self.cache.get_credential(key)
        if hit is not None:
            p = self.principal(hit[0])
            if p is not None and not p.disabled:
                return p
            self.cache.drop_credential(key)
        digest = security.sha256_hex(token)
        with self.db.session() as db:
            row = db.scalars(
                select(ApiToken).where(ApiToken.token_hash == digest, ApiToken.revoked_at.is_(None))
            ).first()
            if row is None:
                return None
            uid = row.user_id
        p = self.principal(uid)
        if p is None or p.disabled:
            return None
        self.cache.put_credential(key, p.id, -1)
        return p

    # ------------------------------------------------------------------ API tokens
    def create_api_token(self, user_id: int, name: str) -> dict[str, Any]:
        token = security.new_api_token()
        with self.db.session() as db:
            row = ApiToken(
                user_id=user_id,
                name=name.strip()[:100] or "token",
                token_hash=security.sha256_hex(token),
                prefix=token[:10],
                created_at=utcnow(),
            )
            db.add(row)
            db.flush()
            return {"id": row.id, "name": row.name, "token": token, "prefix": row.prefix}

    def list_api_tokens(self, user_id: int) -> list[dict[str, Any]]:
        with self.db.session() as db:
            rows = db.scalars(
                select(ApiToken)
                .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
                .order_by(ApiToken.id)
            )
            return [
                {"id": r.id, "name": r.name, "prefix": r.prefix, "created_at": _iso(r.created_at)}
                for r in rows
            ]

    def revoke_api_token(self, user_id: int, token_id: int) -> None:
        with self.db.session() as db:
            row = db.get(ApiToken, token_id)
            if row is None or row.user_id != user_id or row.revoked_at is not None:
                raise AccountError(404, "not_found", f"no token {token_id}")
            row.revoked_at = utcnow()
        # cached token entries are keyed by the token itself: drop all of this user's
        self.notify(user_id)

    def notify(self, user_id: int) -> None:
        """A user changed: this process, the other processes on this host (epoch file),
        and the on_user_changed hooks (other replicas) forget what they cached."""
        self.cache.bump_epoch()
        user_changed(user_id)
