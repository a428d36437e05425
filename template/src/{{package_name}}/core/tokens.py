"""Issue and verify JWTs. Knows PyJWT and the key set; nothing about HTTP or users.

Each token kind (access, refresh) has its own `token_type` claim and audience, so one kind
can never be accepted as another.
"""

from __future__ import annotations

import math
import threading
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

#: How many verified access tokens a process remembers (about 1 KiB each).
VERIFIED_CACHE_SIZE = 4096


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


class VerifiedTokens:
    """Access tokens this process has verified in full, by their exact text.

    A client sends the same access token on every request until it expires; remembering the
    claims of a token already verified skips its signature check and parsing. The key is the
    whole token text, so a token differing in any character (tampered, re-encoded, re-signed)
    is a different key and is verified in full. A hit still checks the token's times; the
    caller still checks revocation. Bounded: the oldest entry goes first. Thread-safe.
    """

    def __init__(self, size: int = VERIFIED_CACHE_SIZE) -> None:
        self._size = size
        self._claims: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> dict[str, Any] | None:
        """The claims of `token` if it was verified before, as a copy the caller may change."""
        claims = self._claims.get(token)
        return None if claims is None else dict(claims)

    def put(self, token: str, claims: dict[str, Any]) -> None:
        """Remember a token that passed every check."""
        with self._lock:
            if len(self._claims) >= self._size:
                self._claims.pop(next(iter(self._claims)), None)
            self._claims[token] = dict(claims)

    def discard(self, token: str) -> None:
        """Forget a token (it expired)."""
        with self._lock:
            self._claims.pop(token, None)

    def __len__(self) -> int:
        return len(self._claims)


def _is_time(value: object) -> bool:
    """A finite number of seconds (JSON parsing lets NaN and Infinity through)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


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
        self.verified = VerifiedTokens()

    def issue_access(self, subject: str, session_id: str | None = None) -> IssuedToken:
        """Sign an access token for the user whose id is `subject`, in login session `session_id`."""
        return self._issue(TokenType.ACCESS, subject, session_id)

    def issue_refresh(
        self, subject: str, session_id: str, not_after: int | None = None
    ) -> IssuedToken:
        """Sign a refresh token; it never outlives `not_after` (the session's absolute end)."""
        return self._issue(TokenType.REFRESH, subject, session_id, not_after)

    def verify_access(self, token: str) -> dict[str, Any]:
        """Return the claims of a valid access token, or raise an `InvalidToken`.

        The first time a token is seen it is verified in full; afterwards, its times.
        """
        claims = self.verified.get(token)
        if claims is None:
            claims = self._verify(TokenType.ACCESS, token)
            self.verified.put(token, claims)
            return claims
        try:
            self._check_times(claims)
        except ExpiredToken:
            self.verified.discard(token)
            raise
        return claims

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

    def _check_times(self, claims: dict[str, Any]) -> None:
        """Expiry, not-before and issued-at, by this service's clock, as PyJWT checks them."""
        times = (claims["exp"], claims["iat"], claims.get("nbf", 0))
        if not all(_is_time(value) for value in times):
            raise InvalidToken("The token's times are not numbers.")
        now, leeway = self._clock(), self._policy.leeway_seconds
        if claims["exp"] <= now - leeway:
            raise ExpiredToken()
        if claims["iat"] > now + leeway or claims.get("nbf", 0) > now + leeway:
            raise InvalidToken("The token is not valid yet.")

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
                # Times are checked below, by this service's clock, for cached tokens too.
                options={
                    "require": list(REQUIRED_CLAIMS),
                    "strict_aud": True,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as exc:
            # PyJWTError covers InvalidKeyError too, which is not an InvalidTokenError.
            raise InvalidToken() from exc
        if claims["token_type"] != token_type.value:
            raise InvalidToken(f"A {token_type.value} token is required here.")
        self._check_times(claims)
        return claims
