"""Dependencies the routes declare: the auth service and the current user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from ..core.schemas import UserOut
from ..core.service import AuthService
from ..core.tokens import bearer_token

# Declares the scheme in OpenAPI so Swagger UI's Authorize button logs in at /auth/login.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/login", auto_error=False)


def get_auth(request: Request) -> AuthService:
    """Return the app's auth service."""
    return request.app.state.auth


AuthDep = Annotated[AuthService, Depends(get_auth)]


def get_current_user(
    request: Request, auth: AuthDep, _token: Annotated[str | None, Depends(oauth2_scheme)]
) -> UserOut:
    """Resolve the bearer token to its user (sync: the user lookup runs in the thread pool)."""
    return auth.current_user(bearer_token(request.headers.get("Authorization")))


CurrentUser = Annotated[UserOut, Depends(get_current_user)]
