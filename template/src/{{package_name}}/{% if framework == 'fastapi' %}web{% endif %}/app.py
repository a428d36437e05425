"""Build the FastAPI application from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .. import TITLE
from ..core.service import AuthService
from ..settings import Settings
from .errors import register_error_handlers
from .routes import auth, health, jwks, users


def create_app(settings: Settings) -> FastAPI:
    """Return a new app with its own keys and database; nothing is shared between apps."""
    service = AuthService.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        service.database.dispose()

    app = FastAPI(title=TITLE, lifespan=lifespan)
    app.state.auth = service
    register_error_handlers(app)
    app.include_router(health.router)
    app.include_router(auth.router)
    if service.refresh_enabled:
        app.include_router(auth.refresh_router)
    app.include_router(users.router)
    app.include_router(jwks.router)
    return app
