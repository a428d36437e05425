"""Login sessions: refresh tokens by the chosen strategy, logout, and revocation checks.

- `none`: login returns an access token only; logout revokes that token.
- `stateless`: the refresh token is a signed JWT of its own type and audience; refreshing
  writes nothing; logout records its `jti` (and session) as revoked until it would expire.
- `rotating`: every refresh returns a new pair and invalidates the token presented. A token
  used twice means it leaked: the whole session (every token since that login) is revoked,
  except within `REFRESH_REUSE_GRACE_SECONDS` of its rotation, when the token just rotated is
  presented again (two tabs refreshing at once, a retry after a lost response): that gets the
  session's current refresh token again (`Sessions._successor`).
  The store keeps only `jti`s, never a usable token, and a session ends at a fixed time after
  its login however often it is refreshed.

No access token outlives its login: its `exp` is capped at the refresh token's. So a session's
revocation, kept until the session ends, covers every token of that session.

Revocations live in the database, so logout holds across every process and instance. On
PostgreSQL each process also keeps the live ones in memory, kept current by notifications
(`revocations`), and checks them there; elsewhere, or while that set is not known to be
complete, the check is one primary-key read.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .claims import Claims, RefreshClaims, token_claims, user_id_of
from .db import (
    REVOKED,
    Database,
    PasswordReset,
    RefreshToken,
    Revocation,
    User,
    revocation_parameters,
    user_key,
)
from .errors import AccountDisabled, InvalidToken, RefreshTokenReused, RevokedToken, ServiceError
from .events import security_event
from .revocations import CHANNEL, USER_PREFIX, Revocations, payload
from .tokens import IssuedToken, TokenService

#: The users table's columns, as `User`'s attributes are named.
USER_COLUMNS = tuple(column.key for column in User.__table__.columns)


class Strategy(StrEnum):
    """How refresh tokens work; see the module docstring."""

    NONE = "none"
    STATELESS = "stateless"
    ROTATING = "rotating"


@dataclass(frozen=True)
class Tokens:
    """What a login or a refresh hands out."""

    access: IssuedToken
    refresh: IssuedToken | None = None


class Sessions:
    """Issues, refreshes and ends login sessions for one strategy."""

    def __init__(
        self,
        strategy: Strategy,
        database: Database,
        tokens: TokenService,
        revocations: Revocations | None = None,
        reuse_grace_seconds: int = 0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.strategy = strategy
        self._database = database
        self._tokens = tokens
        self._revoked = database.prepare(REVOKED)
        # The refresh token's user (to refuse a deleted or disabled one, and to make the new
        # access token's claims from) and whether the token is revoked, in one read.
        self._standing = database.prepare(
            select(*(getattr(User, name) for name in USER_COLUMNS), REVOKED.exists()).where(
                User.id == bindparam("user_id")
            )
        )
        self._cutoff = database.prepare(
            select(Revocation.revoked_at).where(Revocation.id == bindparam("user_key"))
        )
        #: The live revocations in memory (PostgreSQL), or None: read the database.
        self.revocations = revocations
        #: Seconds in which the refresh token just rotated may be presented again (`_rotate`).
        self.reuse_grace_seconds = reuse_grace_seconds
        self._sleep = sleep

    @property
    def revocations_known(self) -> bool:
        """Whether `is_revoked` answers from memory now (no database round trip)."""
        return self.revocations is not None and self.revocations.known

    def revoked_in_memory(self, claims: Claims) -> bool | None:
        """Whether the live set in memory covers an access token (its claims); None when the
        set is not known now, so the database must be asked. One look at `known`: a caller
        that must not wait on the network (the event loop) acts on this answer, not on a
        second look that the listener may have changed meanwhile."""
        revocations = self.revocations
        if revocations is None or not revocations.known:
            return None
        return revocations.covers(claims)

    def start(self, user: User) -> Tokens:
        """Begin a session at login (after the user's last cut-off second, `wait_past_cutoff`);
        the access token carries the user's claims (`claims.token_claims`)."""
        self.wait_past_cutoff(user.id)
        subject, extra = str(user.id), token_claims(user)
        if self.strategy is Strategy.NONE:
            return Tokens(self._tokens.issue_access(subject, extra=extra))
        session_id = uuid.uuid4().hex
        refresh = self._tokens.issue_refresh(subject, session_id)
        if self.strategy is Strategy.ROTATING:
            with self._database.session() as db:
                db.add(self._row(refresh, session_id, user.id))
        access = self._tokens.issue_access(
            subject, session_id, not_after=refresh.expires_at, extra=extra
        )
        return Tokens(access, refresh)

    def refresh(self, token: str) -> Tokens:
        """Exchange a refresh token for new tokens, or raise an `InvalidToken` (or
        `AccountDisabled`): its user must still exist and be enabled."""
        claims = self._tokens.verify_refresh(token)
        # The user's claims as the database has them now: a role granted or revoked since the
        # last refresh shows in the new access token.
        extra = token_claims(self._check_standing(claims))
        subject, session_id = claims["sub"], claims["sid"]
        if self.strategy is Strategy.STATELESS:
            remaining = claims["exp"] - self._tokens.now()
            refresh = IssuedToken(token, claims["jti"], remaining, claims["exp"])
            access = self._tokens.issue_access(
                subject, session_id, not_after=claims["exp"], extra=extra
            )
            return Tokens(access, refresh)
        return self._rotate(claims, extra)

    def end(self, access_claims: Claims, refresh_token: str | None) -> ServiceError | None:
        """Log out: revoke the access token and its session, then the refresh token's session
        if one is given. A refresh token that is refused does not undo the first part: the
        error is returned, for the caller to report."""
        revoke = {access_claims["jti"]: access_claims["exp"]}
        session_id = access_claims.get("sid")
        if session_id:
            revoke[session_id] = self._tokens.session_horizon()
        self._revoke_all(revoke)
        if refresh_token is None:
            return None
        try:
            claims = self._tokens.verify_refresh(refresh_token)
        except InvalidToken as exc:
            return exc
        if claims["sub"] != access_claims["sub"]:
            return InvalidToken("The refresh token belongs to another user.")
        self._revoke_all({claims["jti"]: claims["exp"], claims["sid"]: claims["exp"]})
        return None

    def end_everywhere(self, user_id: uuid.UUID, db: Session | None = None) -> int:
        """Cut the user off: every token issued to them up to this second is refused from now
        on, everywhere (logout everywhere, a password change or reset, a deleted or disabled
        account). Pass `db` to make it part of a larger transaction. Returns the second."""
        key, horizon, now = user_key(user_id), self._tokens.session_horizon(), self._tokens.now()
        if db is None:
            with self._database.session() as own:
                self._revoke(own, key, horizon, now)
        else:
            self._revoke(db, key, horizon, now)
        self._applied({key: horizon}, now)
        return now

    def wait_past_cutoff(self, user_id: uuid.UUID) -> None:
        """Tokens issued in the second a user was cut off are refused (`iat` has whole seconds):
        wait for the next second before issuing any (at most a second, only right after a
        cut-off; longer only by the clock difference between instances, up to the leeway)."""
        key = user_key(user_id)
        if self.revocations is not None and self.revocations.known:
            cutoff = self.revocations.cutoff(key)
        else:
            row = self._cutoff.first({"user_key": key})
            cutoff = None if row is None else row[0]
        if cutoff is None:
            return
        wait = cutoff + 1 - self._tokens.clock()
        if wait > 0:
            self._sleep(min(wait, 1 + self._tokens.policy.leeway_seconds))

    @property
    def revocation_query(self) -> str:
        """The SQL of the revocation check, for inspection."""
        return self._revoked.sql

    def is_revoked(self, claims: Claims) -> bool:
        """Whether an access token (its claims) is revoked: the token, its session, or every
        token of its user up to its `iat`. From memory when the set is known to be complete,
        else one primary-key read."""
        revoked = self.revoked_in_memory(claims)
        if revoked is not None:
            return revoked
        return self._revoked.first(revocation_parameters(claims)) is not None

    async def is_revoked_async(self, claims: Claims) -> bool:
        """`is_revoked` on the event loop (`Database.open_async_reads`)."""
        revoked = self.revoked_in_memory(claims)
        if revoked is not None:
            return revoked
        return await self._revoked.first_async(revocation_parameters(claims)) is not None

    def _check_standing(self, claims: RefreshClaims) -> User:
        """A refresh token's user, once the database says the token is not revoked and the user
        exists and is enabled (memory keeps only what access tokens need): one read."""
        row = self._standing.first({"user_id": user_id_of(claims), **revocation_parameters(claims)})
        if row is None:
            raise InvalidToken("The user of this token no longer exists.")
        *columns, revoked = row
        values = dict(zip(USER_COLUMNS, columns, strict=True))
        if revoked:
            raise RevokedToken()
        if values["disabled_at"] is not None:
            raise AccountDisabled()
        return User(**values)

    def _rotate(self, claims: RefreshClaims, extra: Mapping[str, object]) -> Tokens:
        now = self._tokens.now()
        successor = None
        with self._database.session() as db:
            row = db.get(RefreshToken, claims["jti"])
            if row is None:
                raise InvalidToken("The refresh token is not known.")
            refresh = self._tokens.issue_refresh(
                claims["sub"], row.session_id, not_after=row.expires_at, issued_at=now
            )
            # The conditional UPDATE is the atomic step: of any number of concurrent requests
            # (threads, processes or instances) presenting one token, exactly one matches. It
            # runs on the session's connection, whose result has the count of rows matched.
            use = (
                update(RefreshToken)
                .where(RefreshToken.jti == claims["jti"], RefreshToken.used_at.is_(None))
                .values(used_at=now, replaced_by=refresh.jti)
            )
            used = db.connection().execute(use).rowcount
            if used == 1:
                db.add(self._row(refresh, row.session_id, row.user_id))
            else:
                db.refresh(row)
                successor = self._successor(db, row, claims["sub"], now)
                if successor is None:
                    self._revoke(db, row.session_id, row.expires_at, now)
        if used != 1 and successor is None:
            self._applied({row.session_id: row.expires_at}, now)
            security_event("refresh_token_reused", user_id=row.user_id, session_id=row.session_id)
            raise RefreshTokenReused()
        if successor is not None:
            security_event("refresh_token_grace", user_id=row.user_id, session_id=row.session_id)
            refresh = successor
        access = self._tokens.issue_access(
            claims["sub"], row.session_id, not_after=row.expires_at, extra=extra
        )
        return Tokens(access, refresh)

    def _successor(
        self, db: Session, row: RefreshToken, subject: str, now: int
    ) -> IssuedToken | None:
        """Within the grace period, a token used once more is an honest race (two tabs, a retry
        after a lost response) if it is the immediate predecessor of the session's current
        token: hand out that current token again (same `jti`, same times). Otherwise, None:
        it is a reuse."""
        if self.reuse_grace_seconds <= 0 or row.used_at is None or row.replaced_by is None:
            return None
        if now - row.used_at >= self.reuse_grace_seconds:  # (a racing thread's `now` may be older)
            return None
        current = db.get(RefreshToken, row.replaced_by)
        if current is None or current.used_at is not None:
            return None
        return self._tokens.issue_refresh(
            subject,
            row.session_id,
            not_after=row.expires_at,
            issued_at=row.used_at,
            jti=current.jti,
        )

    def _row(self, refresh: IssuedToken, session_id: str, user_id: uuid.UUID) -> RefreshToken:
        return RefreshToken(
            jti=refresh.jti, session_id=session_id, user_id=user_id, expires_at=refresh.expires_at
        )

    def _revoke_all(self, revoke: dict[str, int]) -> None:
        """Record revocations (id: when its tokens have all expired) in one transaction."""
        now = self._tokens.now()
        with self._database.session() as db:
            for key, expires_at in revoke.items():
                self._revoke(db, key, expires_at, now)
        self._applied(revoke, now)

    def _applied(self, revoke: dict[str, int], now: int) -> None:
        """Committed at `now`: this process knows at once (the others by notification), with
        the very second the database and the notification have (a second read of the clock
        could be the next second, and refuse the first login after a cut-off here)."""
        if self.revocations is not None:
            for key, expires_at in revoke.items():
                self.revocations.add(key, expires_at, now)

    def _revoke(self, db: Session, key: str, expires_at: int, now: int) -> None:
        """Record a revocation made at `now`; a concurrent or repeated one for the same key is
        no error (a user's cut-off moves to the later second). On PostgreSQL every process is
        notified when the transaction commits."""
        dialect = db.get_bind().dialect.name
        values = {"id": key, "expires_at": expires_at, "revoked_at": now}
        if dialect in {"sqlite", "postgresql"}:
            module = sqlite if dialect == "sqlite" else postgresql
            statement = module.insert(Revocation).values(values)
            if key.startswith(USER_PREFIX):
                later = {"expires_at": expires_at, "revoked_at": now}
                db.execute(statement.on_conflict_do_update(index_elements=["id"], set_=later))
            else:
                db.execute(statement.on_conflict_do_nothing())
        else:
            existing = db.get(Revocation, key)
            if existing is None:
                db.execute(insert(Revocation).values(values))
            elif key.startswith(USER_PREFIX):
                existing.expires_at, existing.revoked_at = expires_at, now
        if dialect == "postgresql":
            db.execute(select(func.pg_notify(CHANNEL, payload(key, expires_at, now))))


def delete_expired(database: Database, now: int, leeway_seconds: int = 0) -> int:
    """Delete revocations, refresh-token and reset records whose tokens have all expired by `now`,
    counting the clock-skew leeway during which an expired token is still accepted. No
    deadline: a large backlog may take a while (`Database.maintenance`)."""
    now -= leeway_seconds
    with database.maintenance() as db:
        gone = db.execute(delete(Revocation).where(Revocation.expires_at < now)).rowcount
        gone += db.execute(delete(RefreshToken).where(RefreshToken.expires_at < now)).rowcount
        gone += db.execute(delete(PasswordReset).where(PasswordReset.expires_at < now)).rowcount
    return gone
