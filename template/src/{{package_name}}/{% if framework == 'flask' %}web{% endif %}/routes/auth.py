"""Registration and login."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from ...core.schemas import LoginForm, Registration, parse_json, parse_login_body, validate
from ..deps import auth_service

bp = Blueprint("auth", __name__, url_prefix="/auth")


@bp.post("/register")
def register() -> tuple[dict[str, Any], int]:
    """Create a user."""
    registration = validate(Registration, parse_json(request.get_data()))
    return auth_service().register(registration).model_dump(), 201


@bp.post("/login")
def login() -> dict[str, Any]:
    """Exchange a username and password (OAuth2 form or JSON) for an access token."""
    data = parse_login_body(request.content_type, request.get_data())
    return auth_service().login(validate(LoginForm, data)).model_dump()
