"""Liveness and readiness probes."""

from flask import Blueprint

from ..deps import auth_service

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> dict[str, str]:
    """Liveness: answer while the process can serve requests (no database)."""
    return {"status": "ok"}


@bp.get("/health/ready")
def ready() -> dict[str, str]:
    """Readiness: 200 when the database answers, 503 `service_unavailable` when it does not."""
    return auth_service().ready()
