"""Registration, the token endpoint (login, refresh), logout, and the password's life:
change, reset by e-mail, logout everywhere."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from ...core.schemas import GrantType, TokenResponse
from ..deps import (
    auth_service,
    client_address,
    current_claims,
    hashing,
    json_request_body,
    request_body,
    token_required,
)

bp = Blueprint("auth", __name__, url_prefix="/auth")
# Registered only when a refresh strategy is on; otherwise /auth/refresh is a 404.
refresh_bp = Blueprint("refresh", __name__, url_prefix="/auth")
# Registered only when the service can send mail (SMTP_HOST, or the log in development).
reset_bp = Blueprint("password_reset", __name__, url_prefix="/auth")


@bp.post("/register")
def register() -> tuple[dict[str, Any], int]:
    """Create a user (`email` is optional: it is where password resets go). The password must
    not be easy to guess (422 `weak_password` says why)."""
    user = hashing(auth_service().register(json_request_body(), client_address()))
    return user.model_dump(), 201


@bp.post("/login")
def login() -> tuple[dict[str, Any], dict[str, str]]:
    """The OAuth2 token endpoint: a username and password (`grant_type=password`), or a refresh
    token (`grant_type=refresh_token`, with a refresh strategy), for tokens. Repeated failed
    logins wait longer and longer (429 with `Retry-After`)."""
    return _token_response(auth_service().login_grants)


@refresh_bp.post("/refresh")
def refresh() -> tuple[dict[str, Any], dict[str, str]]:
    """Exchange a refresh token for new tokens: JSON `{"refresh_token"}`, or RFC 6749's form."""
    return _token_response((GrantType.REFRESH_TOKEN,))


@bp.post("/logout")
@token_required
def logout() -> Response:
    """Revoke the bearer token and its login, and the login of the refresh token in the body if
    any. The bearer token is checked before the body is read. 204, or 200 with a report when
    the refresh token or the body was refused (the bearer token's login has ended all the
    same: a body sent as another type than JSON too)."""
    auth = auth_service()
    body = request_body()
    report = auth.logout(current_claims(), body, _cookie(), content_type=request.content_type)
    headers = auth.logout_headers(request.headers.get)
    if report is None:
        return Response(status=204, headers=headers)
    return Response(report.model_dump_json(), 200, headers, mimetype="application/json")


@bp.post("/logout-all")
@token_required
def logout_all() -> tuple[str, int]:
    """End every session of the user, on every device: every token issued to them so far is
    refused from now on."""
    auth_service().logout_all(current_claims())
    return "", 204


@bp.post("/password")
@token_required
def change_password() -> tuple[dict[str, Any], dict[str, str]]:
    """Change the password (403 `wrong_password` if `current_password` is not it). Every
    session of the user ends, this one too; the answer is a new login's tokens."""
    auth = auth_service()
    tokens = hashing(auth.change_password(current_claims(), json_request_body(), client_address()))
    return _delivered(tokens)


@reset_bp.post("/password-reset")
def request_password_reset() -> tuple[str, int]:
    """Send a password-reset message to the account with this address, if there is one. The
    answer (202) is the same either way."""
    auth_service().request_password_reset(json_request_body(), client_address())
    return "", 202


@reset_bp.post("/password-reset/confirm")
def confirm_password_reset() -> tuple[str, int]:
    """Set a new password with the token from a reset message (once; 400
    `invalid_reset_token` if it is unknown, used or expired). Every session of the user ends."""
    hashing(auth_service().confirm_password_reset(json_request_body(), client_address()))
    return "", 204


def _token_response(grants: tuple[GrantType, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    """Run the token endpoint (login or refresh) on this request."""
    auth = auth_service()
    parsed = auth.token_request(request.content_type, request_body(), grants, _cookie())
    if parsed[0] is GrantType.PASSWORD:
        return _delivered(hashing(auth.password_grant(parsed, client_address())))
    return _delivered(auth.refresh_grant(parsed, client_address()))


def _cookie() -> str | None:
    """A browser client's refresh-token cookie (`core.cookies`)."""
    return auth_service().cookie_token_of(request.headers.get, request.headers.get("Cookie"))


def _delivered(tokens: TokenResponse) -> tuple[dict[str, Any], dict[str, str]]:
    """The token response's body and headers (no-store, and the cookie)."""
    body, headers = auth_service().deliver(tokens, request.headers.get)
    return body.model_dump(exclude_none=True), headers
