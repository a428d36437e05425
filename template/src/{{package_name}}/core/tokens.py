"""Issue and verify JWTs. Knows PyJWT and the key set; nothing about HTTP or users.

Each token kind is typed twice over (RFC 8725 section 3.11): by its header `typ` (`at+jwt` for
access tokens, RFC 9068; `rt+jwt` for refresh tokens) and by its audience (refresh tokens are
for the issuer's own refresh endpoint, `<issuer>/refresh`, which can never be an access
token's audience). So neither kind is accepted as the other, here or by another service that
checks `aud` as the README says. The private `token_type` claim says it a third time.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeGuard

import jwt

from .claims import Claims, RefreshClaims
from .errors import ExpiredToken, InvalidRequest, InvalidToken, MissingToken
from .keys import EXTRA_ALGORITHMS, KeySet, accepted_algorithms

#: Tokens longer than this are refused before any parsing (a DoS guard).
MAX_TOKEN_LENGTH = 8192

REQUIRED_CLAIMS = ("iss", "aud", "sub", "iat", "exp", "jti", "token_type")
#: Those of them that are strings; the others are times (`claims.Claims` has their types).
STRING_CLAIMS = ("iss", "aud", "sub", "jti", "token_type")

#: How many verified access tokens a process remembers (about 1 KiB each).
VERIFIED_CACHE_SIZE = 4096

#: Why a token whose `kid` names no key this service trusts now is refused.
UNKNOWN_KEY = "The token was not signed by a key of this service."

#: What is appended to the issuer to make the refresh tokens' audience.
REFRESH_AUDIENCE_SUFFIX = "/refresh"


class TokenType(StrEnum):
    """The kinds of token the service issues; the value is the `token_type` claim."""

    ACCESS = "access"
    REFRESH = "refresh"

    @property
    def typ(self) -> str:
        """The `typ` header of this kind: RFC 9068's for access tokens, our own for refresh."""
        return "at+jwt" if self is TokenType.ACCESS else "rt+jwt"

    def has_typ(self, typ: object) -> bool:
        """Whether a header `typ` names this kind; media types compare ignoring case, and the
        `application/` prefix may be present (RFC 7515 section 4.1.9)."""
        if not isinstance(typ, str):
            return False
        return typ.lower().removeprefix("application/") == self.typ

    @property
    def required(self) -> str:
        """The message for a token of another kind presented where this kind is required."""
        article = "An" if self is TokenType.ACCESS else "A"
        return f"{article} {self.value} token is required here."


class KeySource(Protocol):
    """Where the keys come from: a fixed `KeySet`, or a key ring that changes while running."""

    def current(self) -> KeySet:
        """The key set to sign and verify with now."""
        ...


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
    service, so their audience is the issuer's refresh endpoint (`refresh_audience`): neither
    is accepted as the other. `leeway_seconds` is the clock skew tolerated between the
    instances that issue and verify (on `exp`, `iat` and `nbf`).
    """

    issuer: str
    audience: str
    access_lifetime_seconds: int
    refresh_lifetime_seconds: int = 0
    leeway_seconds: int = 0

    @property
    def refresh_audience(self) -> str:
        """The `aud` of refresh tokens, derived from the issuer."""
        return refresh_audience(self.issuer)

    def audience_of(self, token_type: TokenType) -> str:
        """The `aud` a token of this type carries."""
        return self.refresh_audience if token_type is TokenType.REFRESH else self.audience


def refresh_audience(issuer: str) -> str:
    """The audience of this issuer's refresh tokens: its refresh endpoint, nobody else. The
    settings refuse an access audience equal to it."""
    return issuer + REFRESH_AUDIENCE_SUFFIX


def bearer_token(authorization: Sequence[str]) -> str:
    """Extract the token from the `Authorization` header values of a request.

    More than one header, or one that joins several (WSGI servers join repeated headers with
    commas; a token never contains one), is refused: which one would count is ambiguous.
    """
    if len(authorization) > 1 or any("," in value for value in authorization):
        raise InvalidRequest("Send one Authorization header, with one bearer token.")
    scheme, _, token = (authorization[0] if authorization else "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise MissingToken()
    return token.strip()


class VerifiedTokens:
    """Access tokens this process has verified in full, by their exact text.

    A client sends the same access token on every request until it expires; remembering the
    claims of a token already verified skips its signature check and parsing. The key is the
    whole token text, so a token differing in any character (tampered, re-encoded, re-signed)
    is a different key and is verified in full. A hit still checks the token's times and that
    its key is still trusted; the caller still checks revocation. Bounded: the oldest entry
    goes first. Thread-safe.
    """

    def __init__(self, size: int = VERIFIED_CACHE_SIZE) -> None:
        self._size = size
        self._entries: dict[str, tuple[Claims, str]] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> tuple[Claims, str] | None:
        """The claims of `token` (a copy the caller may change) and the `kid` that verified
        it, if it was verified before."""
        entry = self._entries.get(token)
        return None if entry is None else (entry[0].copy(), entry[1])

    def put(self, token: str, claims: Claims, kid: str) -> None:
        """Remember a token that passed every check, and the key that verified it."""
        with self._lock:
            if len(self._entries) >= self._size:
                self._entries.pop(next(iter(self._entries)), None)
            self._entries[token] = (claims.copy(), kid)

    def discard(self, token: str) -> None:
        """Forget a token (it expired, or its key is no longer trusted)."""
        with self._lock:
            self._entries.pop(token, None)

    def __len__(self) -> int:
        return len(self._entries)


#: Times beyond this (the year 9999) are refused: they are no real expiry.
MAX_TIME = 253402300799


def _is_time(value: object) -> bool:
    """Whole seconds, as this service issues them (JSON parsing lets fractions, NaN, Infinity
    and huge integers through)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    return -MAX_TIME <= value <= MAX_TIME


def _has_claim_types(claims: Mapping[str, object]) -> TypeGuard[Claims]:
    """Whether every claim the service reads has the type it issues (PyJWT checks some of
    them only when present, and times not at all when it is not told to check them)."""
    return (
        all(isinstance(claims.get(name), str) for name in STRING_CLAIMS)
        and all(_is_time(claims.get(name)) for name in ("iat", "exp"))
        and _is_time(claims.get("nbf", 0))
        and isinstance(claims.get("sid", ""), str)
    )


def _is_refresh(claims: Claims) -> TypeGuard[RefreshClaims]:
    """Whether access-shaped `claims` also have what a refresh token needs: its session."""
    return "sid" in claims


def _pyjwt() -> jwt.PyJWT:
    """PyJWT, refusing short keys, with the algorithm names it does not ship yet registered.

    PyJWT has no public way to add an algorithm to a `PyJWT` instance; its JWS layer (`_jws`)
    has `register_algorithm`. A test signs and verifies with every extra name, so a PyJWT
    release that changes this fails the suite rather than the service.
    """
    instance = jwt.PyJWT(options={"enforce_minimum_key_length": True})
    for name, algorithm in EXTRA_ALGORITHMS.items():
        if name not in instance._jws.get_algorithms():
            instance._jws.register_algorithm(name, algorithm())
    return instance


class TokenService:
    """Signs and verifies this service's tokens with one pinned algorithm."""

    def __init__(
        self, keys: KeySource, policy: TokenPolicy, clock: Callable[[], float] = time.time
    ) -> None:
        self._keys = keys
        self._policy = policy
        self._clock = clock
        self._jwt = _pyjwt()
        self._lifetimes = {
            TokenType.ACCESS: policy.access_lifetime_seconds,
            TokenType.REFRESH: policy.refresh_lifetime_seconds,
        }
        self.verified = VerifiedTokens()

    @property
    def policy(self) -> TokenPolicy:
        """Issuer, audiences, lifetimes and leeway."""
        return self._policy

    def issue_access(
        self,
        subject: str,
        session_id: str | None = None,
        not_after: int | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> IssuedToken:
        """Sign an access token for the user whose id is `subject`, in login session
        `session_id`, with the `extra` claims (scope, yours); it never outlives `not_after`
        (the end of its login)."""
        return self._issue(TokenType.ACCESS, subject, session_id, not_after, extra=extra)

    def issue_refresh(
        self,
        subject: str,
        session_id: str,
        not_after: int | None = None,
        *,
        issued_at: int | None = None,
        jti: str | None = None,
    ) -> IssuedToken:
        """Sign a refresh token; it never outlives `not_after` (the session's absolute end).
        `issued_at` and `jti` re-create a token issued before (the rotation's grace period)."""
        return self._issue(TokenType.REFRESH, subject, session_id, not_after, issued_at, jti)

    def verify_access(self, token: str) -> Claims:
        """Return the claims of a valid access token, or raise an `InvalidToken`.

        The first time a token is seen it is verified in full; afterwards, its times.
        """
        remembered = self.verified.get(token)
        if remembered is None:
            claims, kid = self._verify(TokenType.ACCESS, token)
            self.verified.put(token, claims, kid)
            return claims
        claims, kid = remembered
        try:
            if self._keys.current().verification_key(kid) is None:
                raise InvalidToken(UNKNOWN_KEY)
            self._check_times(claims)
        except InvalidToken:
            self.verified.discard(token)
            raise
        return claims

    def verify_refresh(self, token: str) -> RefreshClaims:
        """Return the claims of a valid refresh token, or raise an `InvalidToken`."""
        claims, _ = self._verify(TokenType.REFRESH, token)
        if not _is_refresh(claims):
            raise InvalidToken("A refresh token must name its session.")
        return claims

    def now(self) -> int:
        """The current time in whole seconds, by this service's clock."""
        return int(self._clock())

    def clock(self) -> float:
        """The current time, by this service's clock."""
        return self._clock()

    def session_horizon(self) -> int:
        """A time by which every token of a session started now or earlier has expired."""
        return self.now() + sum(self._lifetimes.values())

    def _issue(
        self,
        token_type: TokenType,
        subject: str,
        session_id: str | None,
        not_after: int | None = None,
        issued_at: int | None = None,
        jti: str | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> IssuedToken:
        now = self.now() if issued_at is None else issued_at
        expires = now + self._lifetimes[token_type]
        if not_after is not None:
            expires = min(expires, not_after)
        jti = jti or uuid.uuid4().hex
        claims: dict[str, object] = {
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
        claims.update(extra or {})
        keys = self._keys.current()
        token = self._jwt.encode(
            claims,
            keys.signing_key,
            algorithm=keys.algorithm,
            headers={"kid": keys.kid, "typ": token_type.typ},
        )
        remaining = expires - (now if issued_at is None else self.now())
        return IssuedToken(token=token, jti=jti, expires_in=remaining, expires_at=expires)

    def _check_times(self, claims: Claims) -> None:
        """Expiry, not-before and issued-at, by this service's clock, as PyJWT checks them."""
        now, leeway = self._clock(), self._policy.leeway_seconds
        if claims["exp"] <= now - leeway:
            raise ExpiredToken()
        if claims["iat"] > now + leeway or claims.get("nbf", 0) > now + leeway:
            raise InvalidToken("The token is not valid yet.")

    def _verify(self, token_type: TokenType, token: str) -> tuple[Claims, str]:
        """The claims of a valid token of `token_type`, and the `kid` that verified it."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("The token is too large.")
        keys = self._keys.current()
        try:
            header = jwt.get_unverified_header(token)
            if not token_type.has_typ(header.get("typ")):
                raise InvalidToken(token_type.required)
            kid = header.get("kid")
            if not isinstance(kid, str) or (key := keys.verification_key(kid)) is None:
                raise InvalidToken(UNKNOWN_KEY)
            claims = self._jwt.decode(
                token,
                key,
                algorithms=accepted_algorithms(keys.algorithm),
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
            raise InvalidToken(token_type.required)
        if not _has_claim_types(claims):
            raise InvalidToken(
                "The token's claims are not of the types this service issues (times are whole "
                "seconds; jti and sid are strings)."
            )
        self._check_times(claims)
        return claims, kid
