"""What views need: the auth service and the `login_required` decorator."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import current_app, g, request

from ..core.service import AuthService
from ..core.tokens import bearer_token

P = ParamSpec("P")
R = TypeVar("R")


def auth_service() -> AuthService:
    """Return the current app's auth service."""
    return current_app.extensions["auth"]


def login_required(view: Callable[P, R]) -> Callable[P, R]:
    """Require a valid access token; the view finds its user in `g.user`."""

    @functools.wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        token = bearer_token(request.headers.get("Authorization"))
        g.user = auth_service().current_user(token)
        return view(*args, **kwargs)

    return wrapped
