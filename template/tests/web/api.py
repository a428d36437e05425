"""A framework-neutral view of the test client, so one set of web tests serves both frameworks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

PASSWORD = "correct horse battery"


class Headers(Protocol):
    """What tests read of a response's headers (each framework's own class): by name,
    ignoring case."""

    def __getitem__(self, name: str, /) -> str: ...

    def __contains__(self, name: str, /) -> bool: ...


@dataclass(frozen=True)
class Reply:
    """What a test asserts on: status, parsed JSON body (None if empty or not JSON), headers,
    and the body as text."""

    status: int
    body: Any
    headers: Headers
    text: str = ""


class Api:
    """The `auth` helper of flaskr's tests: register, log in and call routes as a user."""

    #: The refresh strategy of the app, where a fixture makes apps of several to compare.
    strategy: str = ""

    def request(self, method: str, path: str, **kwargs: Any) -> Reply:
        """Send one request through the framework's test client."""
        raise NotImplementedError

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> Reply:
        """GET `path`, with `token` as the bearer token when given."""
        return self.request("GET", path, headers=bearer(token), **kwargs)

    def post(self, path: str, **kwargs: Any) -> Reply:
        """POST to `path`."""
        return self.request("POST", path, **kwargs)

    def register(self, username: str = "alice", password: str = PASSWORD) -> Reply:
        """Register a user with a JSON body."""
        return self.post("/auth/register", json={"username": username, "password": password})

    def login(self, username: str = "alice", password: str = PASSWORD) -> str:
        """Log in with the OAuth2 form and return the access token."""
        form = {"grant_type": "password", "username": username, "password": password}
        reply = self.post("/auth/login", data=form)
        assert reply.status == 200, reply.body
        token: str = reply.body["access_token"]
        return token

    def signed_in(self, username: str = "alice") -> str:
        """Register `username` and return an access token for it."""
        assert self.register(username).status == 201
        return self.login(username)


def bearer(token: str | None) -> dict[str, str]:
    """Headers that carry `token` as a bearer token."""
    return {"Authorization": f"Bearer {token}"} if token is not None else {}
