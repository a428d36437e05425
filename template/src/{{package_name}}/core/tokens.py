"""Issue and verify JWTs. Knows PyJWT and the key set; nothing about HTTP or users.

Each token kind (access now; refresh tokens use the same machinery) has its own
`token_type` claim, so one kind can never be accepted as another.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
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


@dataclass(frozen=True)
class IssuedToken:
    """A freshly signed token and what a client needs to know about it."""

    token: str
    jti: str
    expires_in: int


@dataclass(frozen=True)
class TokenPolicy:
    """What every token of this service must say: who issued it, for whom, for how long."""

    issuer: str
    audience: str
    access_lifetime_seconds: int
    leeway_seconds: int = 0


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
        self._lifetimes = {TokenType.ACCESS: policy.access_lifetime_seconds}

    def issue_access(self, subject: str) -> IssuedToken:
        """Sign an access token for the user whose id is `subject`."""
        return self._issue(TokenType.ACCESS, subject)

    def verify_access(self, token: str) -> dict[str, Any]:
        """Return the claims of a valid access token, or raise an `InvalidToken`."""
        return self._verify(TokenType.ACCESS, token)

    def _issue(
        self, token_type: TokenType, subject: str, extra: Mapping[str, Any] | None = None
    ) -> IssuedToken:
        now = int(self._clock())
        lifetime = self._lifetimes[token_type]
        jti = uuid.uuid4().hex
        claims = {
            **(extra or {}),
            "iss": self._policy.issuer,
            "aud": self._policy.audience,
            "sub": subject,
            "iat": now,
            "exp": now + lifetime,
            "jti": jti,
            "token_type": token_type.value,
        }
        token = self._jwt.encode(
            claims,
            self._keys.signing_key,
            algorithm=self._keys.algorithm,
            headers={"kid": self._keys.kid},
        )
        return IssuedToken(token=token, jti=jti, expires_in=lifetime)

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
                audience=self._policy.audience,
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
