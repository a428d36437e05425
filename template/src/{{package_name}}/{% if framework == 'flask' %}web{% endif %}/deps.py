"""What views need: the auth service, the `login_required` / `token_required` decorators and
what they find (`current_user`, `current_claims`), `hashing` for work that hashes a password,
the request's body and client address."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import current_app, g, request

from ..core.claims import Claims, require_scopes
from ..core.errors import BodyTooLarge
from ..core.schemas import UserOut, json_body
from ..core.service import AuthService, Hashing
from ..core.tokens import bearer_token

P = ParamSpec("P")
R = TypeVar("R")


def auth_service() -> AuthService:
    """Return the current app's auth service."""
    auth: AuthService = current_app.extensions["auth"]
    return auth


def login_required(view: Callable[P, R]) -> Callable[P, R]:
    """Require a valid access token; the view finds its user with `current_user()` (also in
    `g.user`), read in one query."""

    @functools.wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        g.user = auth_service().current_user(_bearer())
        return view(*args, **kwargs)

    return wrapped


def token_required(view: Callable[P, R]) -> Callable[P, R]:
    """Require a valid access token without loading its user: the view finds the token's
    claims with `current_claims()` (also in `g.claims`; `["sub"]` is the user id)."""

    @functools.wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        g.claims = auth_service().authenticate(_bearer())
        return view(*args, **kwargs)

    return wrapped


def scopes_required(*scopes: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """`@scopes_required("admin")`: require a valid access token that carries these scopes
    (403 `insufficient_scope` if it does not); the view finds its claims as `token_required`'s."""

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
            g.claims = require_scopes(auth_service().authenticate(_bearer()), scopes)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def current_claims() -> Claims:
    """The claims of the request's access token, in a view behind `token_required`."""
    claims: Claims = g.claims
    return claims


def current_user() -> UserOut:
    """The user of the request's access token, in a view behind `login_required`."""
    user: UserOut = g.user
    return user


def hashing(work: Hashing[R]) -> R:
    """Run `work`, which hashes a password: when `ARGON2_MAX_WAITING` requests already wait for
    a hashing slot in this process, answer 503 at once instead of queueing one more. The
    service made `work` after the request's cheap checks (throttling, the password policy),
    so a request those refuse never takes a place."""
    with auth_service().users.hasher.admitted():
        return work()


def client_address() -> str:
    """The client's address: the socket's peer, or what `TRUSTED_PROXIES` say it was."""
    peer = request.environ.get("REMOTE_ADDR")
    return auth_service().client_of(peer, request.headers.getlist("X-Forwarded-For"))


def request_body() -> bytes:
    """The request body, refused with 413 when over `MAX_CONTENT_LENGTH`.

    A body of announced size is refused by werkzeug before it is read. A chunked body has no
    size to check, and werkzeug would cut it at the bound silently: read one byte past it.
    """
    if request.content_length is not None or not request.environ.get("wsgi.input_terminated"):
        return request.get_data()
    limit: int = current_app.config["MAX_CONTENT_LENGTH"]
    data: bytes = request.environ["wsgi.input"].read(limit + 1)
    if len(data) > limit:
        raise BodyTooLarge.over(limit)
    return data


def json_request_body() -> bytes:
    """The request's body, which must be JSON if there is one (415 if it is sent as another
    type, as on FastAPI)."""
    return json_body(request.content_type, request_body())


def _bearer() -> str:
    return bearer_token(request.headers.getlist("Authorization"))
