"""Refresh and logout over HTTP, for each refresh strategy (the setting can be switched)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from ..helpers import KeySet, Settings, header_for, settings_with, sign_raw
from .api import PASSWORD, Api, Reply, bearer
from .test_login import assert_token_error

FORM = {"Content-Type": "application/x-www-form-urlencoded"}

STRATEGIES = ["none", "stateless", "rotating"]


@pytest.fixture(params=STRATEGIES)
def strategy_api(
    request: pytest.FixtureRequest, make_api: Callable[[Settings], Api], settings: Settings
) -> Api:
    """The app with one refresh strategy."""
    api = make_api(settings_with(settings, refresh_strategy=request.param))
    api.strategy = request.param
    return api


def login(api: Api, username: str = "alice") -> dict[str, Any]:
    api.register(username)
    reply = api.post(
        "/auth/login", data={"grant_type": "password", "username": username, "password": PASSWORD}
    )
    assert reply.status == 200
    tokens: dict[str, Any] = reply.body
    return tokens


def assert_logged_out_reporting(reply: Reply, detail: str, code: str) -> None:
    """The logout succeeded and reports why the refresh token (or the body) was refused."""
    assert reply.status == 200
    assert reply.body == {
        "logged_out": True,
        "refresh_token_error": {"detail": detail, "code": code},
    }


def refresh(api: Api, token: str) -> Reply:
    return api.post("/auth/refresh", json={"refresh_token": token})


def test_logout_revokes_the_access_token_at_once(strategy_api: Api) -> None:
    tokens = login(strategy_api)
    assert strategy_api.get("/users/me", token=tokens["access_token"]).status == 200
    reply = strategy_api.post("/auth/logout", headers=bearer(tokens["access_token"]))
    assert reply.status == 204
    refused = strategy_api.get("/users/me", token=tokens["access_token"])
    assert refused.status == 401
    assert refused.body == {"detail": "The token has been revoked.", "code": "invalid_token"}
    assert refused.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def test_logout_needs_a_bearer_token(strategy_api: Api) -> None:
    reply = strategy_api.post("/auth/logout")
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == "Bearer"


def test_refresh_route_exists_only_with_a_strategy(strategy_api: Api, settings: Settings) -> None:
    tokens = login(strategy_api)
    if strategy_api.strategy == "none":
        assert set(tokens) == {"access_token", "token_type", "expires_in"}
        reply = refresh(strategy_api, "anything")
        assert reply.status == 404
        assert reply.body["code"] == "not_found"
    else:
        assert tokens["refresh_expires_in"] == settings.refresh_token_days * 86400
        assert refresh(strategy_api, tokens["refresh_token"]).status == 200


@pytest.fixture(params=["stateless", "rotating"])
def refreshing_api(
    request: pytest.FixtureRequest, make_api: Callable[[Settings], Api], settings: Settings
) -> Api:
    api = make_api(settings_with(settings, refresh_strategy=request.param))
    api.strategy = request.param
    return api


def test_access_and_refresh_tokens_cannot_be_swapped(refreshing_api: Api) -> None:
    tokens = login(refreshing_api)
    as_access = refreshing_api.get("/users/me", token=tokens["refresh_token"])
    assert as_access.status == 401
    assert as_access.body["code"] == "invalid_token"
    assert as_access.body["detail"] == "An access token is required here."
    as_refresh = refresh(refreshing_api, tokens["access_token"])
    assert_token_error(as_refresh, "invalid_grant", "invalid_token")
    assert as_refresh.body["detail"] == "A refresh token is required here."


def test_refresh_flow_then_logout(refreshing_api: Api) -> None:
    tokens = login(refreshing_api)
    first = refresh(refreshing_api, tokens["refresh_token"])
    assert first.status == 200
    assert set(first.body) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "refresh_expires_in",
    }
    second = refresh(refreshing_api, first.body["refresh_token"])
    assert second.status == 200
    if refreshing_api.strategy == "rotating":
        assert first.body["refresh_token"] != tokens["refresh_token"]
        assert second.body["refresh_token"] != first.body["refresh_token"]
    else:
        assert second.body["refresh_token"] == tokens["refresh_token"]
    access = second.body["access_token"]
    assert refreshing_api.get("/users/me", token=access).status == 200
    logout = refreshing_api.post(
        "/auth/logout",
        headers=bearer(access),
        json={"refresh_token": second.body["refresh_token"]},
    )
    assert logout.status == 204
    assert refreshing_api.get("/users/me", token=access).status == 401
    after = refresh(refreshing_api, second.body["refresh_token"])
    assert_token_error(after, "invalid_grant", "invalid_token")
    assert after.body["detail"] == "The token has been revoked."


def test_refresh_as_an_rfc_6749_form_at_both_paths(refreshing_api: Api) -> None:
    """Section 6's refresh: at /auth/refresh, and at the token endpoint /auth/login."""
    tokens = login(refreshing_api)
    for path in ("/auth/refresh", "/auth/login"):
        form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        reply = refreshing_api.post(path, data=form)
        assert reply.status == 200, reply.body
        assert reply.headers["Cache-Control"] == "no-store"
        assert refreshing_api.get("/users/me", token=reply.body["access_token"]).status == 200
        tokens = reply.body


def test_refresh_refuses_other_grants_and_forms_without_one(refreshing_api: Api) -> None:
    tokens = login(refreshing_api)
    form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    assert_token_error(
        refreshing_api.post("/auth/refresh", data=form),
        "unsupported_grant_type",
        "unsupported_grant_type",
    )
    bare = refreshing_api.post("/auth/refresh", data={"refresh_token": tokens["refresh_token"]})
    assert_token_error(bare, "invalid_request", "validation_error")
    twice = f"grant_type=refresh_token&refresh_token={tokens['refresh_token']}&refresh_token=x"
    repeated = refreshing_api.post("/auth/refresh", content=twice.encode(), headers=FORM)
    assert_token_error(repeated, "invalid_request", "validation_error")


def test_refresh_grant_at_the_token_endpoint_without_a_strategy(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    api = make_api(settings_with(settings, refresh_strategy="none"))
    tokens = login(api)
    form = {"grant_type": "refresh_token", "refresh_token": tokens["access_token"]}
    reply = api.post("/auth/login", data=form)
    assert_token_error(reply, "unsupported_grant_type", "unsupported_grant_type")


def test_logout_with_another_users_refresh_token_still_logs_out(refreshing_api: Api) -> None:
    alice, bob = login(refreshing_api, "alice"), login(refreshing_api, "bob")
    reply = refreshing_api.post(
        "/auth/logout",
        headers=bearer(alice["access_token"]),
        json={"refresh_token": bob["refresh_token"]},
    )
    assert_logged_out_reporting(
        reply, "The refresh token belongs to another user.", "invalid_token"
    )
    assert refreshing_api.get("/users/me", token=alice["access_token"]).status == 401
    assert refresh(refreshing_api, alice["refresh_token"]).status == 400
    assert refresh(refreshing_api, bob["refresh_token"]).status == 200


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"refresh_token": "not-a-token"}, "invalid_token"),
        ({"refresh_token": 7}, "validation_error"),
    ],
)
def test_logout_with_a_bad_refresh_token_still_logs_out(
    refreshing_api: Api, body: dict[str, Any], code: str
) -> None:
    tokens = login(refreshing_api)
    reply = refreshing_api.post("/auth/logout", headers=bearer(tokens["access_token"]), json=body)
    assert reply.status == 200
    assert reply.body["logged_out"] is True
    assert reply.body["refresh_token_error"]["code"] == code
    assert refreshing_api.get("/users/me", token=tokens["access_token"]).status == 401
    assert refresh(refreshing_api, tokens["refresh_token"]).status == 400


@pytest.mark.parametrize("content_type", ["text/plain", None])
def test_logout_with_a_body_of_another_type_still_logs_out(
    strategy_api: Api, content_type: str | None
) -> None:
    """The bearer token and its login end whatever the body; a body that is not JSON is
    reported as a refresh token would be (issue 11), not answered 415 with nothing revoked."""
    tokens = login(strategy_api)
    headers = bearer(tokens["access_token"])
    if content_type:
        headers["Content-Type"] = content_type
    body = json.dumps({"refresh_token": tokens.get("refresh_token", "x")}).encode()
    reply = strategy_api.post("/auth/logout", content=body, headers=headers)
    assert_logged_out_reporting(
        reply,
        "Send the body as JSON, with Content-Type: application/json.",
        "unsupported_media_type",
    )
    assert strategy_api.get("/users/me", token=tokens["access_token"]).status == 401
    if "refresh_token" in tokens:  # the bearer token's login was its login too
        assert refresh(strategy_api, tokens["refresh_token"]).status == 400


def test_logout_with_a_body_over_the_bound_is_refused_and_does_nothing(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    """A body over `MAX_BODY_BYTES` is not taken in (413, as on every route): the logout did
    not happen, and the answer says so; the client logs out again without it."""
    api = make_api(settings_with(settings, max_body_bytes=1024))
    tokens = login(api)
    big = json.dumps({"refresh_token": "x" * 2000}).encode()
    headers = {**bearer(tokens["access_token"]), "Content-Type": "application/json"}
    reply = api.post("/auth/logout", content=big, headers=headers)
    assert reply.status == 413
    assert reply.body["code"] == "body_too_large"
    assert api.get("/users/me", token=tokens["access_token"]).status == 200
    assert api.post("/auth/logout", headers=bearer(tokens["access_token"])).status == 204


def test_refresh_validation(refreshing_api: Api) -> None:
    reply = refreshing_api.post("/auth/refresh", json={})
    assert_token_error(reply, "invalid_request", "validation_error")


def test_replayed_refresh_token_revokes_the_whole_login(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    grace = {"refresh_reuse_grace_seconds": 0}
    api = make_api(settings_with(settings, refresh_strategy="rotating", **grace))
    tokens = login(api)
    rotated = refresh(api, tokens["refresh_token"]).body
    replay = refresh(api, tokens["refresh_token"])
    assert_token_error(replay, "invalid_grant", "refresh_token_reused")
    # The attacker's and the victim's tokens both stop working.
    assert refresh(api, rotated["refresh_token"]).status == 400
    assert api.get("/users/me", token=rotated["access_token"]).status == 401
    assert api.get("/users/me", token=tokens["access_token"]).status == 401
    # Other logins of the same user are untouched.
    other = api.post(
        "/auth/login", data={"grant_type": "password", "username": "alice", "password": PASSWORD}
    ).body
    assert api.get("/users/me", token=other["access_token"]).status == 200


def test_a_replay_within_the_grace_period_gets_the_current_token(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    """Two tabs refreshing with one token: both get the same new refresh token, and the login
    lives on (REFRESH_REUSE_GRACE_SECONDS, 10 by default)."""
    api = make_api(settings_with(settings, refresh_strategy="rotating"))
    tokens = login(api)
    first = refresh(api, tokens["refresh_token"]).body
    second = refresh(api, tokens["refresh_token"]).body
    assert second["refresh_token"] != tokens["refresh_token"]
    claims = [
        jwt.decode(t["refresh_token"], options={"verify_signature": False}) for t in (first, second)
    ]
    assert claims[0]["jti"] == claims[1]["jti"]
    assert api.get("/users/me", token=second["access_token"]).status == 200
    assert refresh(api, second["refresh_token"]).status == 200


def test_rotation_never_extends_the_login(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    api = make_api(settings_with(settings, refresh_strategy="rotating", refresh_token_days=1))
    tokens = login(api)
    first_exp = jwt.decode(tokens["refresh_token"], options={"verify_signature": False})["exp"]
    rotated = refresh(api, tokens["refresh_token"]).body["refresh_token"]
    assert jwt.decode(rotated, options={"verify_signature": False})["exp"] == first_exp


def test_logout_with_an_expired_refresh_token_still_logs_out(
    refreshing_api: Api, keys: KeySet
) -> None:
    tokens = login(refreshing_api)
    claims = jwt.decode(tokens["refresh_token"], options={"verify_signature": False})
    expired = {**claims, "iat": claims["iat"] - 7200, "exp": claims["iat"] - 3600}
    header = header_for(keys, typ="rt+jwt")
    stale = sign_raw(keys, header, json.dumps(expired).encode())
    reply = refreshing_api.post(
        "/auth/logout", headers=bearer(tokens["access_token"]), json={"refresh_token": stale}
    )
    assert reply.status == 200
    assert reply.body["refresh_token_error"] == {
        "detail": "The token has expired.",
        "code": "token_expired",
    }
    assert refreshing_api.get("/users/me", token=tokens["access_token"]).status == 401
