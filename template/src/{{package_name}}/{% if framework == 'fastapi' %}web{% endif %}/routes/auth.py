"""Registration, the token endpoint (login, refresh), logout, and the password's life:
change, reset by e-mail, logout everywhere."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from ...core.schemas import GrantType, TokenResponse, UserOut
from ...core.service import AuthService
from ..deps import AccessClaims, AuthDep, ClientAddress, hashing, json_request_body

router = APIRouter(prefix="/auth", tags=["auth"])
# Mounted only when a refresh strategy is on; otherwise /auth/refresh is a 404.
refresh_router = APIRouter(prefix="/auth", tags=["auth"])
# Mounted only when the service can send mail (SMTP_HOST, or the log in development).
reset_router = APIRouter(prefix="/auth", tags=["auth"])

# The routes' request bodies, answers and errors are described in `core.openapi`, for both
# frameworks; FastAPI's own description of them is replaced by it (`app._openapi`).


@router.post(
    "/register",
    status_code=201,
)
async def register(request: Request, auth: AuthDep, client: ClientAddress) -> UserOut:
    """Create a user (`email` is optional: it is where password resets go). The password must
    not be easy to guess (422 `weak_password` says why)."""
    body = await json_request_body(request)
    return await hashing(request, await run_in_threadpool(auth.register, body, client))


@router.post(
    "/login",
    response_model_exclude_none=True,
)
async def login(
    request: Request, response: Response, auth: AuthDep, client: ClientAddress
) -> TokenResponse:
    """The OAuth2 token endpoint: a username and password (`grant_type=password`), or a refresh
    token (`grant_type=refresh_token`, with a refresh strategy), for tokens. Repeated failed
    logins wait longer and longer (429 with `Retry-After`)."""
    content_type, body = request.headers.get("content-type"), await request.body()
    parsed = auth.token_request(content_type, body, auth.login_grants, _cookie(request, auth))
    if parsed[0] is GrantType.PASSWORD:
        login = await run_in_threadpool(auth.password_grant, parsed, client)
        tokens = await hashing(request, login)
    else:
        tokens = await run_in_threadpool(auth.refresh_grant, parsed, client)
    return _delivered(request, response, auth, tokens)


@refresh_router.post(
    "/refresh",
    response_model_exclude_none=True,
)
async def refresh(
    request: Request, response: Response, auth: AuthDep, client: ClientAddress
) -> TokenResponse:
    """Exchange a refresh token for new tokens: JSON `{"refresh_token"}`, or RFC 6749's form."""
    content_type, body = request.headers.get("content-type"), await request.body()
    grants = (GrantType.REFRESH_TOKEN,)
    parsed = auth.token_request(content_type, body, grants, _cookie(request, auth))
    tokens = await run_in_threadpool(auth.refresh_grant, parsed, client)
    return _delivered(request, response, auth, tokens)


@router.post(
    "/password",
    response_model_exclude_none=True,
)
async def change_password(
    request: Request, response: Response, claims: AccessClaims, auth: AuthDep, client: ClientAddress
) -> TokenResponse:
    """Change the password (403 `wrong_password` if `current_password` is not it). Every
    session of the user ends, this one too; the answer is a new login's tokens."""
    body = await json_request_body(request)
    change = await run_in_threadpool(auth.change_password, claims, body, client)
    tokens = await hashing(request, change)
    return _delivered(request, response, auth, tokens)


@router.post("/logout-all", status_code=204)
async def logout_all(claims: AccessClaims, auth: AuthDep) -> Response:
    """End every session of the user, on every device: every token issued to them so far is
    refused from now on."""
    await run_in_threadpool(auth.logout_all, claims)
    return Response(status_code=204)


@reset_router.post(
    "/password-reset",
    status_code=202,
)
async def request_password_reset(
    request: Request, auth: AuthDep, client: ClientAddress
) -> Response:
    """Send a password-reset message to the account with this address, if there is one. The
    answer (202) is the same either way."""
    await run_in_threadpool(auth.request_password_reset, await json_request_body(request), client)
    return Response(status_code=202)


@reset_router.post(
    "/password-reset/confirm",
    status_code=204,
)
async def confirm_password_reset(
    request: Request, auth: AuthDep, client: ClientAddress
) -> Response:
    """Set a new password with the token from a reset message (once; 400
    `invalid_reset_token` if it is unknown, used or expired). Every session of the user ends."""
    body = await json_request_body(request)
    await hashing(request, await run_in_threadpool(auth.confirm_password_reset, body, client))
    return Response(status_code=204)


@router.post(
    "/logout",
    status_code=204,
)
async def logout(request: Request, claims: AccessClaims, auth: AuthDep) -> Response:
    """Revoke the bearer token and its login, and the login of the refresh token in the body if
    any. The bearer token is checked before the body is read. 204, or 200 with a report when
    the refresh token or the body was refused (the bearer token's login has ended all the
    same: a body sent as another type than JSON too)."""
    content_type, body = request.headers.get("content-type"), await request.body()
    cookie = _cookie(request, auth)
    report = await run_in_threadpool(auth.logout, claims, body, cookie, content_type=content_type)
    headers = auth.logout_headers(request.headers.get)
    if report is None:
        return Response(status_code=204, headers=headers)
    return Response(report.model_dump_json(), 200, headers, media_type="application/json")


def _cookie(request: Request, auth: AuthService) -> str | None:
    """A browser client's refresh-token cookie (`core.cookies`)."""
    return auth.cookie_token_of(request.headers.get, request.headers.get("cookie"))


def _delivered(
    request: Request, response: Response, auth: AuthService, tokens: TokenResponse
) -> TokenResponse:
    """The token response's body; its headers go on `response` (no-store, and the cookie)."""
    body, headers = auth.deliver(tokens, request.headers.get)
    response.headers.update(headers)
    return body
