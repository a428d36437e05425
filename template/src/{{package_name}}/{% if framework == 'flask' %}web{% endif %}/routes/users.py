"""The signed-in user's own resource."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g

from ..deps import login_required

bp = Blueprint("users", __name__, url_prefix="/users")


@bp.get("/me")
@login_required
def read_me() -> dict[str, Any]:
    """Return the user the access token belongs to."""
    return g.user.model_dump()
