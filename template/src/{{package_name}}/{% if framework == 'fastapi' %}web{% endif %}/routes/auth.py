"""Registration and login."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ...core.schemas import (
    LoginForm,
    Registration,
    TokenResponse,
    UserOut,
    parse_login_body,
    validate,
)
from ..deps import AuthDep

router = APIRouter(prefix="/auth", tags=["auth"])

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


@router.post("/login", openapi_extra=_LOGIN_BODY)
async def login(request: Request, auth: AuthDep) -> TokenResponse:
    """Exchange a username and password for an access token."""
    data = parse_login_body(request.headers.get("content-type"), await request.body())
    return await run_in_threadpool(auth.login, validate(LoginForm, data))
