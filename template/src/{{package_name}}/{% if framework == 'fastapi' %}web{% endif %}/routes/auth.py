"""Registration, the token endpoint (login, refresh) and logout."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from ...core.errors import NO_STORE
from ...core.schemas import (
    FORM,
    GrantType,
    LogoutReport,
    Registration,
    TokenResponse,
    UserOut,
    parse_json,
    validate,
)
from ..deps import AccessClaims, AuthDep

router = APIRouter(prefix="/auth", tags=["auth"])
# Mounted only when a refresh strategy is on; otherwise /auth/refresh is a 404.
refresh_router = APIRouter(prefix="/auth", tags=["auth"])


def _token_body(*grants: GrantType) -> dict[str, Any]:
    """The OpenAPI request body of a token endpoint that offers `grants` (RFC 6749): a form
    with `grant_type`, or JSON where `grant_type` may be left out."""
    fields = {
        GrantType.PASSWORD: {"username": {"type": "string"}, "password": {"type": "string"}},
        GrantType.REFRESH_TOKEN: {"refresh_token": {"type": "string"}},
    }

    def schema(is_form: bool) -> dict[str, Any]:
        variants = [
            {
                "type": "object",
                "required": (["grant_type"] if is_form else []) + list(fields[grant]),
                "properties": {
                    "grant_type": {"type": "string", "enum": [grant.value]},
                    **fields[grant],
                },
            }
            for grant in grants
        ]
        return variants[0] if len(variants) == 1 else {"oneOf": variants}

    content = {FORM: {"schema": schema(True)}, "application/json": {"schema": schema(False)}}
    return {"requestBody": {"required": True, "content": content}}


_REGISTRATION_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": Registration.model_json_schema()}},
    }
}


@router.post("/register", status_code=201, openapi_extra=_REGISTRATION_BODY)
async def register(request: Request, auth: AuthDep) -> UserOut:
    """Create a user. The body is parsed as every other body is (one error for any malformed
    JSON); Argon2 hashing runs in the thread pool, off the event loop."""
    registration = validate(Registration, parse_json(await request.body()))
    return await run_in_threadpool(auth.register, registration)


@router.post(
    "/login",
    openapi_extra=_token_body(GrantType.PASSWORD, GrantType.REFRESH_TOKEN),
    response_model_exclude_none=True,
)
async def login(request: Request, response: Response, auth: AuthDep) -> TokenResponse:
    """The OAuth2 token endpoint: a username and password (`grant_type=password`), or a refresh
    token (`grant_type=refresh_token`, with a refresh strategy), for tokens."""
    body = await request.body()
    content_type = request.headers.get("content-type")
    tokens = await run_in_threadpool(auth.token, content_type, body, auth.login_grants)
    response.headers.update(NO_STORE)
    return tokens


@refresh_router.post(
    "/refresh", openapi_extra=_token_body(GrantType.REFRESH_TOKEN), response_model_exclude_none=True
)
async def refresh(request: Request, response: Response, auth: AuthDep) -> TokenResponse:
    """Exchange a refresh token for new tokens: JSON `{"refresh_token"}`, or RFC 6749's form."""
    body = await request.body()
    content_type = request.headers.get("content-type")
    grants = (GrantType.REFRESH_TOKEN,)
    tokens = await run_in_threadpool(auth.token, content_type, body, grants)
    response.headers.update(NO_STORE)
    return tokens


@router.post("/logout", status_code=204, responses={200: {"model": LogoutReport}})
async def logout(request: Request, claims: AccessClaims, auth: AuthDep) -> Response:
    """Revoke the bearer token and its login, and the login of the refresh token in the body if
    any. The bearer token is checked before the body is read. 204, or 200 with a report when
    the refresh token was refused (the bearer token's login has ended all the same)."""
    body = await request.body()
    report = await run_in_threadpool(auth.logout, claims, body)
    if report is None:
        return Response(status_code=204)
    return Response(report.model_dump_json(), 200, media_type="application/json")
