"""POST /auth/register."""

import hashlib
from typing import Any

import pytest

from .api import PASSWORD, Api


def test_register_returns_the_new_user(api: Api) -> None:
    reply = api.register("Alice.Smith-1")
    assert reply.status == 201
    assert set(reply.body) == {"id", "username", "email"}
    assert reply.body["username"] == "Alice.Smith-1"
    assert "password" not in str(reply.body)


def test_each_user_gets_its_own_id(api: Api) -> None:
    assert api.register("alice").body["id"] != api.register("bob").body["id"]


def test_duplicate_username_is_refused_ignoring_case(api: Api) -> None:
    api.register("alice")
    reply = api.register("ALICE")
    assert reply.status == 409
    assert reply.body == {"detail": "That username is already taken.", "code": "username_taken"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "al", "password": PASSWORD}, "username"),
        ({"username": "a" * 65, "password": PASSWORD}, "username"),
        ({"username": "alice smith", "password": PASSWORD}, "username"),
        ({"username": "alice@example", "password": PASSWORD}, "username"),
        ({"username": "alice", "password": "short"}, "password"),
        ({"username": "alice", "password": "x" * 257}, "password"),
        ({"username": "alice"}, "password"),
        ({"password": PASSWORD}, "username"),
        ({"username": 5, "password": PASSWORD}, "username"),
    ],
    ids=[
        "username-too-short",
        "username-too-long",
        "username-space",
        "username-at-sign",
        "password-too-short",
        "password-too-long",
        "password-missing",
        "username-missing",
        "username-not-a-string",
    ],
)
def test_invalid_registration_names_the_field(api: Api, body: dict[str, Any], field: str) -> None:
    reply = api.post("/auth/register", json=body)
    assert reply.status == 422
    assert reply.body["code"] == "validation_error"
    assert reply.body["detail"].startswith(f"{field}: ")
    assert set(reply.body) == {"detail", "code"}


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'"alice"', b""])
def test_body_that_is_not_a_json_object_is_a_422(api: Api, content: bytes) -> None:
    reply = api.post(
        "/auth/register", content=content, headers={"Content-Type": "application/json"}
    )
    assert reply.status == 422
    assert reply.body["code"] == "validation_error"
    assert set(reply.body) == {"detail", "code"}


def test_boundary_lengths_are_accepted(api: Api) -> None:
    assert api.register("abc", "Zq7!vR2m").status == 201
    assert api.register("a" * 64, (hashlib.sha512(b"long").hexdigest() * 2)[:256]).status == 201
