"""Registration, login, refresh and logout."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from ...core.schemas import (
    LoginForm,
    RefreshRequest,
    Registration,
    parse_json,
    parse_login_body,
    parse_logout_body,
    validate,
)
from ..deps import auth_service

bp = Blueprint("auth", __name__, url_prefix="/auth")
# Registered only when a refresh strategy is on; otherwise /auth/refresh is a 404.
refresh_bp = Blueprint("refresh", __name__, url_prefix="/auth")


@bp.post("/register")
def register() -> tuple[dict[str, Any], int]:
    """Create a user."""
    registration = validate(Registration, parse_json(request.get_data()))
    return auth_service().register(registration).model_dump(), 201


@bp.post("/login")
def login() -> dict[str, Any]:
    """Exchange a username and password (OAuth2 form or JSON) for tokens."""
    data = parse_login_body(request.content_type, request.get_data())
    return auth_service().login(validate(LoginForm, data)).model_dump(exclude_none=True)


@refresh_bp.post("/refresh")
def refresh() -> dict[str, Any]:
    """Exchange a refresh token for new tokens."""
    body = validate(RefreshRequest, parse_json(request.get_data()))
    return auth_service().refresh(body.refresh_token).model_dump(exclude_none=True)


@bp.post("/logout")
def logout() -> tuple[str, int]:
    """Revoke the bearer token, and the session of the refresh token in the body if any."""
    body = parse_logout_body(request.get_data())
    auth_service().logout(request.headers.get("Authorization"), body)
    return "", 204
