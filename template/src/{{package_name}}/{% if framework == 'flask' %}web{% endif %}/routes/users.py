"""The signed-in user's own resource: read it, change its e-mail address, delete it."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from ...core.errors import NO_STORE
from ..deps import (
    auth_service,
    client_address,
    current_claims,
    current_user,
    hashing,
    json_request_body,
    login_required,
    token_required,
)

bp = Blueprint("users", __name__, url_prefix="/users")


@bp.get("/me")
@login_required
def read_me() -> tuple[dict[str, Any], dict[str, str]]:
    """Return the user the access token belongs to (never cached: it is personal data)."""
    return current_user().model_dump(), NO_STORE


@bp.put("/me/email")
@token_required
def change_email() -> tuple[dict[str, Any], dict[str, str]]:
    """Set the address password resets go to (`null` removes it), confirmed by the password:
    409 `email_taken` if another account has it."""
    auth = auth_service()
    user = hashing(auth.change_email(current_claims(), json_request_body(), client_address()))
    return user.model_dump(), NO_STORE


@bp.delete("/me")
@token_required
def delete_me() -> tuple[str, int]:
    """Delete the account, confirmed by its password: every session ends, and the username
    and address can be registered again."""
    hashing(auth_service().delete_account(current_claims(), json_request_body(), client_address()))
    return "", 204
