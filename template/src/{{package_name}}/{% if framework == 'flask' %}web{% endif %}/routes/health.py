"""Liveness probe."""

from flask import Blueprint

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> dict[str, str]:
    """Answer while the process can serve requests."""
    return {"status": "ok"}
