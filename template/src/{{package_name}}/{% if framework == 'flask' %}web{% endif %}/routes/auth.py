"""Registration, the token endpoint (login, refresh) and logout."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, request

from ...core.errors import NO_STORE
from ...core.schemas import GrantType, Registration, TokenResponse, parse_json, validate
from ..deps import auth_service, request_body, token_required

bp = Blueprint("auth", __name__, url_prefix="/auth")
# Registered only when a refresh strategy is on; otherwise /auth/refresh is a 404.
refresh_bp = Blueprint("refresh", __name__, url_prefix="/auth")


@bp.post("/register")
def register() -> tuple[dict[str, Any], int]:
    """Create a user."""
    registration = validate(Registration, parse_json(request_body()))
    return auth_service().register(registration).model_dump(), 201


@bp.post("/login")
def login() -> tuple[dict[str, Any], dict[str, str]]:
    """The OAuth2 token endpoint: a username and password (`grant_type=password`), or a refresh
    token (`grant_type=refresh_token`, with a refresh strategy), for tokens."""
    auth = auth_service()
    return _token_response(auth.token(request.content_type, request_body(), auth.login_grants))


@refresh_bp.post("/refresh")
def refresh() -> tuple[dict[str, Any], dict[str, str]]:
    """Exchange a refresh token for new tokens: JSON `{"refresh_token"}`, or RFC 6749's form."""
    grants = (GrantType.REFRESH_TOKEN,)
    return _token_response(auth_service().token(request.content_type, request_body(), grants))


@bp.post("/logout")
@token_required
def logout() -> Response | tuple[str, int]:
    """Revoke the bearer token and its login, and the login of the refresh token in the body if
    any. The bearer token is checked before the body is read. 204, or 200 with a report when
    the refresh token was refused (the bearer token's login has ended all the same)."""
    report = auth_service().logout(g.claims, request_body())
    if report is None:
        return "", 204
    return Response(report.model_dump_json(), 200, mimetype="application/json")


def _token_response(tokens: TokenResponse) -> tuple[dict[str, Any], dict[str, str]]:
    return tokens.model_dump(exclude_none=True), NO_STORE
