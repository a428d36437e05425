"""Registration, login, refresh and logout."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, Security
from fastapi.concurrency import run_in_threadpool

from ...core.schemas import (
    LoginForm,
    RefreshRequest,
    Registration,
    TokenResponse,
    UserOut,
    parse_login_body,
    parse_logout_body,
    validate,
)
from ..deps import AuthDep, oauth2_scheme

router = APIRouter(prefix="/auth", tags=["auth"])
# Mounted only when a refresh strategy is on; otherwise /auth/refresh is a 404.
refresh_router = APIRouter(prefix="/auth", tags=["auth"])

_CREDENTIALS_SCHEMA = {
    "type": "object",
    "required": ["username", "password"],
    "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
}
# Login reads its body itself so it can take both the OAuth2 form and JSON; document both.
_LOGIN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {"schema": _CREDENTIALS_SCHEMA},
            "application/json": {"schema": _CREDENTIALS_SCHEMA},
        },
    }
}


@router.post("/register", status_code=201)
def register(body: Registration, auth: AuthDep) -> UserOut:
    """Create a user (sync: Argon2 hashing runs in the thread pool, off the event loop)."""
    return auth.register(body)


@router.post("/login", openapi_extra=_LOGIN_BODY, response_model_exclude_none=True)
async def login(request: Request, auth: AuthDep) -> TokenResponse:
    """Exchange a username and password for tokens."""
    data = parse_login_body(request.headers.get("content-type"), await request.body())
    return await run_in_threadpool(auth.login, validate(LoginForm, data))


@refresh_router.post("/refresh", response_model_exclude_none=True)
def refresh(body: RefreshRequest, auth: AuthDep) -> TokenResponse:
    """Exchange a refresh token for new tokens."""
    return auth.refresh(body.refresh_token)


@router.post("/logout", status_code=204, dependencies=[Security(oauth2_scheme)])
async def logout(request: Request, auth: AuthDep) -> Response:
    """Revoke the bearer token, and the session of the refresh token in the body if any."""
    body = parse_logout_body(await request.body())
    await run_in_threadpool(auth.logout, request.headers.get("Authorization"), body)
    return Response(status_code=204)
