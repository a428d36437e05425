"""GET /users/me and every way it answers 401."""

import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from ..helpers import KeySet, Settings, header_for, settings_with, sign_raw
from .api import Api

CHALLENGE_INVALID = 'Bearer error="invalid_token", error_description="The token is invalid."'


def test_me_returns_the_token_owner(api: Api) -> None:
    user = api.register("alice").body
    reply = api.get("/users/me", token=api.login())
    assert reply.status == 200
    assert reply.body == user
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.headers["Pragma"] == "no-cache"


def test_more_than_one_authorization_header_is_refused(api: Api) -> None:
    """Which header would count is ambiguous (one framework took the first, one joined them)."""
    token = api.signed_in()
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", "Bearer other")]
    reply = api.request("GET", "/users/me", headers=headers)
    assert reply.status == 400
    assert reply.body == {
        "detail": "Send one Authorization header, with one bearer token.",
        "code": "invalid_request",
    }
    assert reply.headers["WWW-Authenticate"].startswith('Bearer error="invalid_request"')


def test_each_user_sees_only_itself(api: Api) -> None:
    alice, bob = api.signed_in("alice"), api.signed_in("bob")
    assert api.get("/users/me", token=alice).body["username"] == "alice"
    assert api.get("/users/me", token=bob).body["username"] == "bob"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic YWxpY2U6cHc="}, {"Authorization": "Bearer"}],
    ids=["no-header", "basic-scheme", "empty-bearer"],
)
def test_without_a_token_the_challenge_has_no_error(api: Api, headers: dict[str, Any]) -> None:
    reply = api.request("GET", "/users/me", headers=headers)
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == "Bearer"
    assert reply.body == {
        "detail": "Send an access token in the Authorization header: Bearer <token>.",
        "code": "not_authenticated",
    }


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 9000])
def test_a_refused_token_gets_invalid_token(api: Api, token: str) -> None:
    reply = api.get("/users/me", token=token)
    assert reply.status == 401
    assert reply.body["code"] == "invalid_token"
    assert reply.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token", ')


def test_forged_token_is_refused(api: Api) -> None:
    token = api.signed_in()
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"
    reply = api.get("/users/me", token=forged)
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == CHALLENGE_INVALID
    assert reply.body == {"detail": "The token is invalid.", "code": "invalid_token"}


def test_expired_token_is_refused_with_its_own_code(api: Api, keys: KeySet) -> None:
    token = api.signed_in()
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["exp"] = int(time.time()) - 120  # beyond the default leeway (30 s)
    expired = sign_raw(keys, header_for(keys), json.dumps(claims).encode())
    reply = api.get("/users/me", token=expired)
    assert reply.status == 401
    assert reply.body == {"detail": "The token has expired.", "code": "token_expired"}
    assert reply.headers["WWW-Authenticate"] == (
        'Bearer error="invalid_token", error_description="The token has expired."'
    )


@pytest.mark.parametrize(("leeway", "status"), [(None, 200), (0, 401)])
def test_the_leeway_setting_decides_on_a_token_just_expired(
    make_api: Callable[[Settings], Api],
    settings: Settings,
    keys: KeySet,
    leeway: int | None,
    status: int,
) -> None:
    """JWT_LEEWAY_SECONDS (30 by default) tolerates clocks apart by that much; 0 tolerates none."""
    api = make_api(
        settings if leeway is None else settings_with(settings, jwt_leeway_seconds=leeway)
    )
    claims = jwt.decode(api.signed_in(), options={"verify_signature": False})
    claims["exp"] = int(time.time()) - 5  # expired 5 s ago, by this clock
    token = sign_raw(keys, header_for(keys), json.dumps(claims).encode())
    assert api.get("/users/me", token=token).status == status


def test_token_of_a_deleted_user_is_refused(api: Api, delete_user: Callable[[str], None]) -> None:
    token = api.signed_in("alice")
    delete_user("alice")
    reply = api.get("/users/me", token=token)
    assert reply.status == 401
    assert reply.body == {"detail": "The token's user no longer exists.", "code": "invalid_token"}
    assert reply.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
