"""The signed-in user's own resource."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g

from ...core.errors import NO_STORE
from ..deps import login_required

bp = Blueprint("users", __name__, url_prefix="/users")


@bp.get("/me")
@login_required
def read_me() -> tuple[dict[str, Any], dict[str, str]]:
    """Return the user the access token belongs to (never cached: it is personal data)."""
    return g.user.model_dump(), NO_STORE
