"""Build the FastAPI application from settings."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from anyio import CapacityLimiter, to_thread
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline

from .. import TITLE, version
from ..core import events
from ..core.cors import CorsPolicy
from ..core.openapi import with_contract_errors
from ..core.service import AuthService
from ..settings import Settings
from .errors import register_error_handlers
from .middleware import Guard
from .routes import auth, custom, health, jwks, users

DOCS_PATH = "/docs"
#: Where Swagger UI's own files are served from (a package, not a CDN: /docs works offline).
DOCS_ASSETS_PATH = "/docs-assets"


def create_app(settings: Settings) -> FastAPI:
    """Return a new app with its own keys and database; nothing is shared between apps."""
    service = AuthService.from_settings(settings)
    events.configure()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # As many threads for blocking work (database reads, password hashing) as database
        # connections: a thread more could only wait for a connection.
        to_thread.current_default_thread_limiter().total_tokens = settings.database_pool_size
        # On PostgreSQL, the reads of the authenticated path wait on this loop (deps).
        service.database.open_async_reads()
        try:
            yield
        finally:
            await service.database.close_async_reads()
            service.database.dispose()

    if settings.docs_enabled:
        app = FastAPIOffline(
            title=TITLE,
            lifespan=lifespan,
            docs_url=DOCS_PATH,
            redoc_url=None,
            static_url=DOCS_ASSETS_PATH,
        )
        docs_paths: tuple[str, ...] = (DOCS_PATH, DOCS_ASSETS_PATH)
    else:
        app = FastAPI(
            title=TITLE, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
        )
        docs_paths = ()
    app.state.auth = service
    # Password hashing has threads of its own (`deps.hashing`).
    app.state.hashing = CapacityLimiter(service.users.hasher.capacity)
    # FastAPI's documented way to replace the description; mypy refuses any assignment to a
    # method, and the app's class is FastAPI's or FastAPIOffline's, so no subclass can do it.
    app.openapi = functools.partial(_openapi, app, service)  # type: ignore[method-assign]
    register_error_handlers(app)
    # Your routes first: FastAPI tries the routes in order on every request, and yours are
    # the service's hot paths (the template's are login and the like, which hash passwords).
    # A path of yours that is also the template's takes its place.
    routers = [custom.router, health.router, auth.router]
    if service.refresh_enabled:
        routers.append(auth.refresh_router)
    if service.password_reset_enabled:
        routers.append(auth.reset_router)
    routers += [users.router, jwks.router]
    app.add_middleware(
        Guard,
        max_body_bytes=settings.max_body_bytes,
        production=settings.environment != "development",
        docs_paths=docs_paths,
        routes=lambda: [route for router in routers for route in router.routes],
        client_of=service.client_of,
        cors=CorsPolicy.from_setting(settings.cors_allowed_origins, service.cookie is not None),
    )
    for router in routers:
        app.include_router(router)
    return app


#: The template's routers: `core.openapi` describes their routes (those a variant offers).
TEMPLATE_ROUTERS = (
    health.router,
    auth.router,
    auth.refresh_router,
    auth.reset_router,
    users.router,
    jwks.router,
)


#: FastAPI's own shape of a 422, which the service never sends (`with_contract_errors`).
FASTAPI_422_SCHEMAS = frozenset({"HTTPValidationError", "ValidationError"})


def _openapi(app: FastAPI, service: AuthService) -> dict[str, Any]:
    """The contract's description, built by the core as for Flask (`core.openapi`), with your
    routes (`routes/custom.py`, or added to the app) as FastAPI describes them, their errors
    as the service answers them (`with_contract_errors`)."""
    if app.openapi_schema is None:
        document = service.openapi(TITLE, version())
        template_paths = {route.path for r in TEMPLATE_ROUTERS for route in r.routes}  # type: ignore[attr-defined]
        own = get_openapi(title=TITLE, version=version(), routes=app.routes)
        for path, operations in own["paths"].items():
            if path not in template_paths:
                described = {
                    method: with_contract_errors(operation)
                    for method, operation in operations.items()
                }
                document["paths"].setdefault(path, described)
        schemas = document["components"]["schemas"]
        for name, schema in own.get("components", {}).get("schemas", {}).items():
            if name not in FASTAPI_422_SCHEMAS:
                schemas.setdefault(name, schema)
        app.openapi_schema = document
    return app.openapi_schema
