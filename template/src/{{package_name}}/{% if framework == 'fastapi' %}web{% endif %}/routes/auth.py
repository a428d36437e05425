"""Registration, the token endpoint (login, refresh), logout, and the password's life:
change, reset by e-mail, logout everywhere."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from ...core.errors import NO_STORE
from ...core.schemas import (
    FORM,
    GrantType,
    LogoutReport,
    PasswordChange,
    PasswordResetConfirmation,
    PasswordResetRequest,
    Registration,
    TokenResponse,
    UserOut,
)
from ..deps import AccessClaims, AuthDep, ClientAddress, errors, hashing

router = APIRouter(prefix="/auth", tags=["auth"])
# Mounted only when a refresh strategy is on; otherwise /auth/refresh is a 404.
refresh_router = APIRouter(prefix="/auth", tags=["auth"])
# Mounted only when the service can send mail (SMTP_HOST, or the log in development).
reset_router = APIRouter(prefix="/auth", tags=["auth"])

BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, CONFLICT, UNPROCESSABLE, THROTTLED, UNAVAILABLE = (
    HTTPStatus.BAD_REQUEST,
    HTTPStatus.UNAUTHORIZED,
    HTTPStatus.FORBIDDEN,
    HTTPStatus.CONFLICT,
    HTTPStatus.UNPROCESSABLE_ENTITY,
    HTTPStatus.TOO_MANY_REQUESTS,
    HTTPStatus.SERVICE_UNAVAILABLE,
)


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads `model` as JSON itself."""
    content = {"application/json": {"schema": model.model_json_schema()}}
    return {"requestBody": {"required": True, "content": content}}


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


@router.post(
    "/register",
    status_code=201,
    openapi_extra=json_body(Registration),
    responses=errors(CONFLICT, UNPROCESSABLE, THROTTLED, UNAVAILABLE),
)
async def register(request: Request, auth: AuthDep, client: ClientAddress) -> UserOut:
    """Create a user (`email` is optional: it is where password resets go). The password must
    not be easy to guess (422 `weak_password` says why)."""
    return await hashing(request, auth.register, await request.body(), client)


@router.post(
    "/login",
    openapi_extra=_token_body(GrantType.PASSWORD, GrantType.REFRESH_TOKEN),
    response_model_exclude_none=True,
    responses=errors(BAD_REQUEST, FORBIDDEN, THROTTLED, UNAVAILABLE),
)
async def login(
    request: Request, response: Response, auth: AuthDep, client: ClientAddress
) -> TokenResponse:
    """The OAuth2 token endpoint: a username and password (`grant_type=password`), or a refresh
    token (`grant_type=refresh_token`, with a refresh strategy), for tokens. Repeated failed
    logins wait longer and longer (429 with `Retry-After`)."""
    parsed = auth.token_request(
        request.headers.get("content-type"), await request.body(), auth.login_grants
    )
    if parsed[0] is GrantType.PASSWORD:
        tokens = await hashing(request, auth.grant, parsed, client)
    else:
        tokens = await run_in_threadpool(auth.grant, parsed, client)
    response.headers.update(NO_STORE)
    return tokens


@refresh_router.post(
    "/refresh",
    openapi_extra=_token_body(GrantType.REFRESH_TOKEN),
    response_model_exclude_none=True,
    responses=errors(BAD_REQUEST, THROTTLED, UNAVAILABLE),
)
async def refresh(
    request: Request, response: Response, auth: AuthDep, client: ClientAddress
) -> TokenResponse:
    """Exchange a refresh token for new tokens: JSON `{"refresh_token"}`, or RFC 6749's form."""
    grants = (GrantType.REFRESH_TOKEN,)
    parsed = auth.token_request(request.headers.get("content-type"), await request.body(), grants)
    tokens = await run_in_threadpool(auth.grant, parsed, client)
    response.headers.update(NO_STORE)
    return tokens


@router.post(
    "/password",
    openapi_extra=json_body(PasswordChange),
    response_model_exclude_none=True,
    responses=errors(UNAUTHORIZED, FORBIDDEN, UNPROCESSABLE, THROTTLED, UNAVAILABLE),
)
async def change_password(
    request: Request, response: Response, claims: AccessClaims, auth: AuthDep, client: ClientAddress
) -> TokenResponse:
    """Change the password (403 `wrong_password` if `current_password` is not it). Every
    session of the user ends, this one too; the answer is a new login's tokens."""
    body = await request.body()
    tokens = await hashing(request, auth.change_password, claims, body, client)
    response.headers.update(NO_STORE)
    return tokens


@router.post("/logout-all", status_code=204, responses=errors(UNAUTHORIZED, UNAVAILABLE))
async def logout_all(claims: AccessClaims, auth: AuthDep) -> Response:
    """End every session of the user, on every device: every token issued to them so far is
    refused from now on."""
    await run_in_threadpool(auth.logout_all, claims)
    return Response(status_code=204)


@reset_router.post(
    "/password-reset",
    status_code=202,
    openapi_extra=json_body(PasswordResetRequest),
    responses=errors(UNPROCESSABLE, THROTTLED),
)
async def request_password_reset(
    request: Request, auth: AuthDep, client: ClientAddress
) -> Response:
    """Send a password-reset message to the account with this address, if there is one. The
    answer (202) is the same either way."""
    await run_in_threadpool(auth.request_password_reset, await request.body(), client)
    return Response(status_code=202)


@reset_router.post(
    "/password-reset/confirm",
    status_code=204,
    openapi_extra=json_body(PasswordResetConfirmation),
    responses=errors(BAD_REQUEST, UNPROCESSABLE, THROTTLED, UNAVAILABLE),
)
async def confirm_password_reset(
    request: Request, auth: AuthDep, client: ClientAddress
) -> Response:
    """Set a new password with the token from a reset message (once; 400
    `invalid_reset_token` if it is unknown, used or expired). Every session of the user ends."""
    await hashing(request, auth.confirm_password_reset, await request.body(), client)
    return Response(status_code=204)


@router.post(
    "/logout",
    status_code=204,
    responses={200: {"model": LogoutReport}, **errors(UNAUTHORIZED, UNAVAILABLE)},
)
async def logout(request: Request, claims: AccessClaims, auth: AuthDep) -> Response:
    """Revoke the bearer token and its login, and the login of the refresh token in the body if
    any. The bearer token is checked before the body is read. 204, or 200 with a report when
    the refresh token was refused (the bearer token's login has ended all the same)."""
    body = await request.body()
    report = await run_in_threadpool(auth.logout, claims, body)
    if report is None:
        return Response(status_code=204)
    return Response(report.model_dump_json(), 200, media_type="application/json")
