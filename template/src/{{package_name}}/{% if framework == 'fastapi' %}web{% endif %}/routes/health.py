"""Liveness and readiness probes."""

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from ..deps import AuthDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: answer while the process can serve requests (no database)."""
    return {"status": "ok"}


@router.get("/health/ready")
async def ready(auth: AuthDep) -> dict[str, str]:
    """Readiness: 200 when the database answers, 503 `service_unavailable` when it does not."""
    return await run_in_threadpool(auth.ready)
