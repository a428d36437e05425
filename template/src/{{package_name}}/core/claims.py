"""The claims of this service's tokens, as verification hands them on (`tokens.TokenService`).

Verification checks every claim read here for its type, so code after it can rely on these:
`sub` is the user's id (a UUID as text), times are whole seconds since the epoch (the only
kind this service issues), `sid` names the login session.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import NotRequired, TypedDict

from .. import claims as project
from ..claims import ExtraClaims
from .db import User
from .errors import InsufficientScope, UnknownUser


class _TokenClaims(TypedDict):
    iss: str
    aud: str
    sub: str
    iat: int
    exp: int
    jti: str
    token_type: str
    #: Not issued by this service; checked if present.
    nbf: NotRequired[int]


class Claims(_TokenClaims, ExtraClaims):
    """A verified access token's claims: `sub` is the user's id; `sid` names its login session
    (absent with the `none` refresh strategy, where there are no sessions); `scope` the user's
    scopes, space-separated (RFC 9068 section 2.2.3; absent when there are none); and your own
    (`<package>.claims.ExtraClaims`)."""

    sid: NotRequired[str]
    scope: NotRequired[str]


#: Claims the service sets itself; `extra_claims` may not return them.
RESERVED = frozenset(
    {"iss", "aud", "sub", "iat", "exp", "nbf", "jti", "token_type", "sid", "scope"}
)


class RefreshClaims(_TokenClaims):
    """A verified refresh token's claims: a refresh token always belongs to a session."""

    sid: str


def token_claims(user: User) -> dict[str, object]:
    """What an access token of `user` says beyond the service's own claims: the user's scopes
    (`scope`) and your `extra_claims`. Made at login and at every refresh."""
    claims: dict[str, object] = dict(project.extra_claims(user))
    taken = sorted(RESERVED & claims.keys())
    if taken:
        raise ValueError(
            f"extra_claims() returned {', '.join(taken)}: claims the service sets itself; "
            "give yours other names"
        )
    if user.scopes:
        claims["scope"] = user.scopes
    return claims


def scopes_of(claims: Claims) -> frozenset[str]:
    """The scopes an access token carries."""
    return frozenset(claims.get("scope", "").split())


def require_scopes(claims: Claims, needed: Iterable[str]) -> Claims:
    """`claims`, if the token carries every scope `needed`; else raise `InsufficientScope`."""
    needed = tuple(needed)
    if not scopes_of(claims).issuperset(needed):
        raise InsufficientScope(needed)
    return claims


def user_id_of(claims: Claims | RefreshClaims) -> uuid.UUID:
    """The user id in verified claims' `sub` (this service signed it: a user id), or
    `UnknownUser` (an invalid token) if it is not one."""
    try:
        return uuid.UUID(claims["sub"])
    except ValueError as exc:
        raise UnknownUser() from exc
