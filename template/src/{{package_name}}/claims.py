"""Your own claims and scopes: the one place to add to what access tokens say about a user.
Made once by `copier copy`; `copier update` never changes this file (README, "Adding a claim").

`extra_claims` runs at every login and every refresh, with the user's row, so a refreshed
access token always carries what the database says now (a refresh token carries none of it).
"""

from __future__ import annotations

from typing import TypedDict

from .core.db import User

#: The scopes (roles) users can be granted (`python -m <package> users grant NAME SCOPE`), with
#: what each allows; the OpenAPI description lists them. A route requires them with
#: `Security(require_scopes, scopes=[...])` (FastAPI) or `@scopes_required(...)` (Flask).
SCOPES: dict[str, str] = {
    "admin": "Manage the service's users",
}


class ExtraClaims(TypedDict, total=False):
    """The claims `extra_claims` adds, as the routes read them from verified claims (add a key
    here for each one, e.g. `tenant: str`)."""


def extra_claims(user: User) -> ExtraClaims:
    """Claims to add to `user`'s access tokens (not the service's own: `sub`, `scope`, ...).
    Keep them small: they travel with every request."""
    return {}
