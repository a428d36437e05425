"""Dependencies the routes declare: the auth service, the caller's token and user.

All of them are `async def`: FastAPI runs a plain `def` dependency in its thread pool, and
the hand-off costs more than the work. They run on the event loop: a token seen before is a
memory lookup, and the check against the database is one indexed read.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from ..core.schemas import UserOut
from ..core.service import AuthService
from ..core.tokens import bearer_token

# Declares the scheme in OpenAPI so Swagger UI's Authorize button logs in at /auth/login.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/login", auto_error=False)


async def get_auth(request: Request) -> AuthService:
    """Return the app's auth service."""
    return request.app.state.auth


AuthDep = Annotated[AuthService, Depends(get_auth)]
Bearer = Annotated[str | None, Depends(oauth2_scheme)]


async def get_access_claims(request: Request, auth: AuthDep, _token: Bearer) -> dict[str, Any]:
    """The claims of the caller's valid, unrevoked access token (`sub` is the user id)."""
    return auth.authenticate(bearer_token(request.headers.get("Authorization")))


async def get_current_user(request: Request, auth: AuthDep, _token: Bearer) -> UserOut:
    """The caller's user: token checks, revocation and user lookup in one read."""
    return auth.current_user(bearer_token(request.headers.get("Authorization")))


AccessClaims = Annotated[dict[str, Any], Depends(get_access_claims)]
CurrentUser = Annotated[UserOut, Depends(get_current_user)]
