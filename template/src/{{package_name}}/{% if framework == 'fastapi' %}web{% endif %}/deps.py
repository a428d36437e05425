"""Dependencies the routes declare: the auth service, the caller's token and user.

`AccessClaims` and `CurrentUser` are each one `async def` dependency with no sub-dependencies
(FastAPI's cost per request grows with every dependency it resolves). The token is checked on
the event loop: no I/O, and a token seen before is a memory lookup. The revocation check is
too, on PostgreSQL while the process's set of live revocations is complete. On SQLite both it
and the user read of `CurrentUser` are local reads, cheaper than a hand-off to a thread, and
they never wait on the loop: if the file is locked, the read is done again in a thread. On
PostgreSQL they wait on the event loop with psycopg's async driver (`core.async_reads`), once
the app's lifespan has opened its connections; a slow or stalled server never blocks the loop.
Anywhere else (another database, or an app whose lifespan did not run) they run in the thread
pool. Both also declare the OAuth2 password flow in
OpenAPI, so Swagger UI's Authorize button logs in at /auth/login.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from anyio import CapacityLimiter, to_thread
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordBearer, SecurityScopes
from fastapi.security.base import SecurityBase

from .. import claims as project
from ..core.claims import Claims, require_scopes
from ..core.db import WouldWait
from ..core.openapi import LOGIN_PATH, SCHEME
from ..core.schemas import UserOut, json_body
from ..core.service import AuthService, Hashing
from ..core.tokens import bearer_token


async def get_auth(request: Request) -> AuthService:
    """Return the app's auth service."""
    auth: AuthService = request.app.state.auth
    return auth


AuthDep = Annotated[AuthService, Depends(get_auth)]


R = TypeVar("R")


async def _read(
    auth: AuthService,
    read: Callable[[Claims], R],
    read_async: Callable[[Claims], Awaitable[R]],
    claims: Claims,
) -> R:
    """`read(claims)` on SQLite (in a thread only if the file is locked), `read_async(claims)`
    on PostgreSQL once the lifespan opened its connections, else `read` in the thread pool."""
    if auth.database_is_local:
        with contextlib.suppress(WouldWait):
            return read(claims)
    if auth.reads_async:
        return await read_async(claims)
    return await run_in_threadpool(read, claims)


class _Bearer(SecurityBase):
    """A dependency that checks the bearer token (its `__call__`, in each subclass), declared
    in OpenAPI as the OAuth2 password flow: FastAPI reads `model` and `scheme_name`."""

    def __init__(self) -> None:
        flow = OAuth2PasswordBearer(tokenUrl=LOGIN_PATH, scheme_name=SCHEME, scopes=project.SCOPES)
        self.model, self.scheme_name = flow.model, flow.scheme_name


class _AccessClaims(_Bearer):
    async def __call__(self, request: Request) -> Claims:
        """The claims of the caller's valid, unrevoked access token (`sub` is the user id)."""
        auth: AuthService = request.app.state.auth
        claims = auth.verify(bearer_token(request.headers.getlist("Authorization")))
        checked = auth.check_not_revoked_in_memory(claims)  # PostgreSQL's live set, if known
        if checked is not None:
            return checked
        return await _read(auth, auth.check_not_revoked, auth.check_not_revoked_async, claims)


class _Scoped(_AccessClaims):
    async def __call__(  # type: ignore[override]  # FastAPI passes the scopes asked for
        self, request: Request, security_scopes: SecurityScopes
    ) -> Claims:
        """The caller's claims, if the token carries every scope the route asks for (403
        `insufficient_scope` if not)."""
        return require_scopes(await super().__call__(request), security_scopes.scopes)


class _CurrentUser(_Bearer):
    async def __call__(self, request: Request) -> UserOut:
        """The caller's user: token checks, revocation and user lookup in one read."""
        auth: AuthService = request.app.state.auth
        claims = auth.verify(bearer_token(request.headers.getlist("Authorization")))
        return await _read(auth, auth.user_of, auth.user_of_async, claims)


async def client_address(request: Request) -> str:
    """The client's address: the socket's peer, or what `TRUSTED_PROXIES` say it was."""
    auth: AuthService = request.app.state.auth
    peer = request.client.host if request.client else None
    return auth.client_of(peer, request.headers.getlist("X-Forwarded-For"))


async def hashing(request: Request, work: Hashing[R]) -> R:
    """Run `work`, which hashes a password, in threads of its own: logins waiting for Argon2
    never hold up requests that do not hash (they keep the default thread pool), and when
    `ARGON2_MAX_WAITING` are already waiting, the next is refused at once (503). The service
    made `work` after the request's cheap checks (throttling, the password policy), so a
    request those refuse never takes a place here."""
    auth: AuthService = request.app.state.auth
    limiter: CapacityLimiter = request.app.state.hashing
    with auth.users.hasher.admitted():
        return await to_thread.run_sync(work, limiter=limiter)


async def json_request_body(request: Request) -> bytes:
    """The request's body, which must be JSON if there is one (415 if it is sent as another
    type, as on Flask)."""
    return json_body(request.headers.get("content-type"), await request.body())


ClientAddress = Annotated[str, Depends(client_address)]
AccessClaims = Annotated[Claims, Depends(_AccessClaims())]
#: `Annotated[Claims, Security(scopes_required, scopes=["admin"])]`: the claims of a token that
#: carries those scopes (README, "Roles"); the OpenAPI description lists them.
scopes_required = _Scoped()
CurrentUser = Annotated[UserOut, Depends(_CurrentUser())]
