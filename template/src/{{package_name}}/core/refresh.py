"""Login sessions: refresh tokens by the chosen strategy, logout, and revocation checks.

- `none`: login returns an access token only; logout revokes that token.
- `stateless`: the refresh token is a signed JWT of its own type and audience; refreshing
  writes nothing; logout records its `jti` (and session) as revoked until it would expire.
- `rotating`: every refresh returns a new pair and invalidates the token presented. A token
  used twice means it leaked: the whole session (every token since that login) is revoked.
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

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .db import REVOKED, Database, RefreshToken, Revocation, revocation_parameters
from .errors import InvalidToken, RefreshTokenReused, RevokedToken, ServiceError
from .events import security_event
from .revocations import CHANNEL, Revocations, payload
from .tokens import IssuedToken, TokenService


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
    ) -> None:
        self.strategy = strategy
        self._database = database
        self._tokens = tokens
        self._revoked = database.prepare(REVOKED)
        #: The live revocations in memory (PostgreSQL), or None: read the database.
        self.revocations = revocations

    @property
    def revocations_known(self) -> bool:
        """Whether `is_revoked` answers from memory now (no database round trip)."""
        return self.revocations is not None and self.revocations.known

    def start(self, user_id: uuid.UUID) -> Tokens:
        """Begin a session at login."""
        subject = str(user_id)
        if self.strategy is Strategy.NONE:
            return Tokens(self._tokens.issue_access(subject))
        session_id = uuid.uuid4().hex
        refresh = self._tokens.issue_refresh(subject, session_id)
        if self.strategy is Strategy.ROTATING:
            with self._database.session() as db:
                db.add(self._row(refresh, session_id, user_id))
        access = self._tokens.issue_access(subject, session_id, not_after=refresh.expires_at)
        return Tokens(access, refresh)

    def refresh(self, token: str) -> Tokens:
        """Exchange a refresh token for new tokens, or raise an `InvalidToken`."""
        claims = self._tokens.verify_refresh(token)
        if self.is_revoked(claims["jti"], claims["sid"]):
            raise RevokedToken()
        subject, session_id = claims["sub"], claims["sid"]
        if self.strategy is Strategy.STATELESS:
            remaining = claims["exp"] - self._tokens.now()
            refresh = IssuedToken(token, claims["jti"], remaining, claims["exp"])
            access = self._tokens.issue_access(subject, session_id, not_after=claims["exp"])
            return Tokens(access, refresh)
        return self._rotate(claims)

    def end(self, access_claims: dict[str, Any], refresh_token: str | None) -> ServiceError | None:
        """Log out: revoke the access token and its session, then the refresh token's session
        if one is given. A refresh token that is refused does not undo the first part: the
        error is returned, for the caller to report."""
        revoke = {access_claims["jti"]: access_claims["exp"]}
        if access_claims.get("sid"):
            revoke[access_claims["sid"]] = self._tokens.session_horizon()
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

    @property
    def revocation_query(self) -> str:
        """The SQL of the revocation check, for inspection."""
        return self._revoked.sql

    def is_revoked(self, token_id: str, session_id: str | None = None) -> bool:
        """Whether a token's `jti`, or its session, is revoked: from memory when the set is
        known to be complete, else one primary-key read."""
        if self.revocations is not None and self.revocations.known:
            return self.revocations.covers(token_id, session_id)
        return self._revoked.first(revocation_parameters(token_id, session_id)) is not None

    def _rotate(self, claims: dict[str, Any]) -> Tokens:
        now = self._tokens.now()
        with self._database.session() as db:
            # The conditional UPDATE is the atomic step: of any number of concurrent requests
            # (threads, processes or instances) presenting one token, exactly one matches.
            used = db.execute(
                update(RefreshToken)
                .where(RefreshToken.jti == claims["jti"], RefreshToken.used_at.is_(None))
                .values(used_at=now)
            ).rowcount
            row = db.get(RefreshToken, claims["jti"])
            if row is None:
                raise InvalidToken("The refresh token is not known.")
            if used != 1:
                self._revoke(db, row.session_id, row.expires_at)
            else:
                refresh = self._tokens.issue_refresh(
                    claims["sub"], row.session_id, not_after=row.expires_at
                )
                db.add(self._row(refresh, row.session_id, row.user_id))
        if used != 1:
            self._applied({row.session_id: row.expires_at})
            security_event("refresh_token_reused", user_id=row.user_id, session_id=row.session_id)
            raise RefreshTokenReused()
        access = self._tokens.issue_access(claims["sub"], row.session_id, not_after=row.expires_at)
        return Tokens(access, refresh)

    def _row(self, refresh: IssuedToken, session_id: str, user_id: uuid.UUID) -> RefreshToken:
        return RefreshToken(
            jti=refresh.jti, session_id=session_id, user_id=user_id, expires_at=refresh.expires_at
        )

    def _revoke_all(self, revoke: dict[str, int]) -> None:
        """Record revocations (id: when its tokens have all expired) in one transaction."""
        with self._database.session() as db:
            for key, expires_at in revoke.items():
                self._revoke(db, key, expires_at)
        self._applied(revoke)

    def _applied(self, revoke: dict[str, int]) -> None:
        """Committed: this process knows at once (the others by notification)."""
        if self.revocations is not None:
            now = self._tokens.now()
            for key, expires_at in revoke.items():
                self.revocations.add(key, expires_at, now)

    def _revoke(self, db: Session, key: str, expires_at: int) -> None:
        """Record a revocation; a concurrent or repeated one for the same key is no error. On
        PostgreSQL every process is notified when the transaction commits."""
        dialect = db.get_bind().dialect.name
        now = self._tokens.now()
        values = {"id": key, "expires_at": expires_at, "revoked_at": now}
        if dialect in {"sqlite", "postgresql"}:
            module = sqlite if dialect == "sqlite" else postgresql
            db.execute(module.insert(Revocation).values(values).on_conflict_do_nothing())
        elif db.get(Revocation, key) is None:
            db.execute(insert(Revocation).values(values))
        if dialect == "postgresql":
            db.execute(select(func.pg_notify(CHANNEL, payload(key, expires_at, now))))


def delete_expired(database: Database, now: int, leeway_seconds: int = 0) -> int:
    """Delete revocations and refresh-token records whose tokens have all expired by `now`,
    counting the clock-skew leeway during which an expired token is still accepted. No
    deadline: a large backlog may take a while (`Database.maintenance`)."""
    now -= leeway_seconds
    with database.maintenance() as db:
        gone = db.execute(delete(Revocation).where(Revocation.expires_at < now)).rowcount
        gone += db.execute(delete(RefreshToken).where(RefreshToken.expires_at < now)).rowcount
    return gone
