"""Dependencies the routes declare: the auth service, the caller's token and user.

`AccessClaims` and `CurrentUser` are each one `async def` dependency with no sub-dependencies:
FastAPI runs a plain `def` dependency in its thread pool, and its cost per request grows with
every dependency it resolves. Both run on the event loop: a token seen before is a memory
lookup, and the check against the database is one primary-key read. Both also declare the
OAuth2 password flow in OpenAPI, so Swagger UI's Authorize button logs in at /auth/login.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from ..core.schemas import UserOut
from ..core.service import AuthService
from ..core.tokens import bearer_token

LOGIN_PATH = "/auth/login"
SCHEME = "OAuth2PasswordBearer"


async def get_auth(request: Request) -> AuthService:
    """Return the app's auth service."""
    return request.app.state.auth


AuthDep = Annotated[AuthService, Depends(get_auth)]


class _Bearer(OAuth2PasswordBearer):
    """The OAuth2 scheme as a dependency that also checks the bearer token."""

    def __init__(self) -> None:
        super().__init__(tokenUrl=LOGIN_PATH, scheme_name=SCHEME, auto_error=False)


class _AccessClaims(_Bearer):
    async def __call__(self, request: Request) -> dict[str, Any]:  # type: ignore[override]
        """The claims of the caller's valid, unrevoked access token (`sub` is the user id)."""
        token = bearer_token(request.headers.getlist("Authorization"))
        return request.app.state.auth.authenticate(token)


class _CurrentUser(_Bearer):
    async def __call__(self, request: Request) -> UserOut:  # type: ignore[override]
        """The caller's user: token checks, revocation and user lookup in one read."""
        token = bearer_token(request.headers.getlist("Authorization"))
        return request.app.state.auth.current_user(token)


AccessClaims = Annotated[dict[str, Any], Depends(_AccessClaims())]
CurrentUser = Annotated[UserOut, Depends(_CurrentUser())]
