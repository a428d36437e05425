"""Issue and verify JWTs. Knows PyJWT and the key set; nothing about HTTP or users.

Each token kind (access, refresh) has its own `token_type` claim and audience, so one kind
can never be accepted as another.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt

from .errors import ExpiredToken, InvalidToken, MissingToken
from .keys import KeySet

#: Tokens longer than this are refused before any parsing (a DoS guard).
MAX_TOKEN_LENGTH = 8192

REQUIRED_CLAIMS = ("iss", "aud", "sub", "iat", "exp", "jti", "token_type")


class TokenType(StrEnum):
    """The kinds of token the service issues; the value is the `token_type` claim."""

    ACCESS = "access"
    REFRESH = "refresh"


@dataclass(frozen=True)
class IssuedToken:
    """A freshly signed token and what a client needs to know about it."""

    token: str
    jti: str
    expires_in: int
    expires_at: int


@dataclass(frozen=True)
class TokenPolicy:
    """What every token of this service must say: who issued it, for whom, for how long.

    Access tokens are for the API's audience; refresh tokens only ever come back to this
    service, so their audience is the issuer itself: neither is accepted as the other.
    """

    issuer: str
    audience: str
    access_lifetime_seconds: int
    refresh_lifetime_seconds: int = 0
    leeway_seconds: int = 0

    def audience_of(self, token_type: TokenType) -> str:
        """The `aud` a token of this type carries."""
        return self.issuer if token_type is TokenType.REFRESH else self.audience


def bearer_token(authorization: str | None) -> str:
    """Extract the token from an `Authorization: Bearer <token>` header value."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise MissingToken()
    return token.strip()


class TokenService:
    """Signs and verifies this service's tokens with one pinned algorithm."""

    def __init__(
        self, keys: KeySet, policy: TokenPolicy, clock: Callable[[], float] = time.time
    ) -> None:
        self._keys = keys
        self._policy = policy
        self._clock = clock
        self._jwt = jwt.PyJWT(options={"enforce_minimum_key_length": True})
        self._lifetimes = {
            TokenType.ACCESS: policy.access_lifetime_seconds,
            TokenType.REFRESH: policy.refresh_lifetime_seconds,
        }

    def issue_access(self, subject: str, session_id: str | None = None) -> IssuedToken:
        """Sign an access token for the user whose id is `subject`, in login session `session_id`."""
        return self._issue(TokenType.ACCESS, subject, session_id)

    def issue_refresh(
        self, subject: str, session_id: str, not_after: int | None = None
    ) -> IssuedToken:
        """Sign a refresh token; it never outlives `not_after` (the session's absolute end)."""
        return self._issue(TokenType.REFRESH, subject, session_id, not_after)

    def verify_access(self, token: str) -> dict[str, Any]:
        """Return the claims of a valid access token, or raise an `InvalidToken`."""
        return self._verify(TokenType.ACCESS, token)

    def verify_refresh(self, token: str) -> dict[str, Any]:
        """Return the claims of a valid refresh token, or raise an `InvalidToken`."""
        claims = self._verify(TokenType.REFRESH, token)
        if not isinstance(claims.get("sid"), str):
            raise InvalidToken()
        return claims

    def now(self) -> int:
        """The current time in whole seconds, by this service's clock."""
        return int(self._clock())

    def session_horizon(self) -> int:
        """A time by which every token of a session started now or earlier has expired."""
        return self.now() + sum(self._lifetimes.values())

    def _issue(
        self,
        token_type: TokenType,
        subject: str,
        session_id: str | None,
        not_after: int | None = None,
    ) -> IssuedToken:
        now = self.now()
        expires = now + self._lifetimes[token_type]
        if not_after is not None:
            expires = min(expires, not_after)
        jti = uuid.uuid4().hex
        claims = {
            "iss": self._policy.issuer,
            "aud": self._policy.audience_of(token_type),
            "sub": subject,
            "iat": now,
            "exp": expires,
            "jti": jti,
            "token_type": token_type.value,
        }
        if session_id is not None:
            claims["sid"] = session_id
        token = self._jwt.encode(
            claims,
            self._keys.signing_key,
            algorithm=self._keys.algorithm,
            headers={"kid": self._keys.kid},
        )
        return IssuedToken(token=token, jti=jti, expires_in=expires - now, expires_at=expires)

    def _verify(self, token_type: TokenType, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("The token is too large.")
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.verification_key(header.get("kid"))
            if key is None:
                raise InvalidToken("The token was not signed by a key of this service.")
            claims = self._jwt.decode(
                token,
                key,
                algorithms=[self._keys.algorithm],
                audience=self._policy.audience_of(token_type),
                issuer=self._policy.issuer,
                leeway=self._policy.leeway_seconds,
                options={"require": list(REQUIRED_CLAIMS), "strict_aud": True},
            )
        except jwt.ExpiredSignatureError as exc:
            raise ExpiredToken() from exc
        except jwt.PyJWTError as exc:
            # PyJWTError covers InvalidKeyError too, which is not an InvalidTokenError.
            raise InvalidToken() from exc
        if claims["token_type"] != token_type.value:
            raise InvalidToken(f"A {token_type.value} token is required here.")
        return claims
