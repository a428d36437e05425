"""The claims of this service's tokens, as verification hands them on (`tokens.TokenService`).

Verification checks every claim read here for its type, so code after it can rely on these:
`sub` is the user's id (a UUID as text), times are whole seconds since the epoch (the only
kind this service issues), `sid` names the login session.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


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


class Claims(_TokenClaims):
    """A verified access token's claims: `sub` is the user's id; `sid` names its login session
    (absent with the `none` refresh strategy, where there are no sessions)."""

    sid: NotRequired[str]


class RefreshClaims(_TokenClaims):
    """A verified refresh token's claims: a refresh token always belongs to a session."""

    sid: str
