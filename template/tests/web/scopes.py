"""The check both frameworks' scoped routes pass (test_scopes.py)."""

from __future__ import annotations

from typing import Any

from .api import PASSWORD, Api


def check_a_scoped_route(api: Api, auth: Any, path: str) -> None:
    """Without the scope: 403 `insufficient_scope` with RFC 6750's challenge; once granted,
    the next token passes; without a token: 401."""
    assert api.register("alice").status == 201
    form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    tokens = api.post("/auth/login", data=form).body
    refused = api.get(path, token=tokens["access_token"])
    assert refused.status == 403
    assert refused.body["code"] == "insufficient_scope"
    challenge = refused.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer error="insufficient_scope"')
    assert challenge.endswith('scope="admin"')
    user = auth.users.by_username("alice")
    auth.users.set_scopes(user.id, ["admin"])
    # The next access token carries it (a refresh, or with no refresh strategy, a login).
    again = api.post("/auth/login", data=form).body
    allowed = api.get(path, token=again["access_token"])
    assert allowed.status == 200
    assert allowed.body == {"sub": str(user.id)}
    assert api.get(path).status == 401
