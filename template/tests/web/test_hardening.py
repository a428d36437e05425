"""Hostile and broken input, and a database that is away: always a 4xx or a 503 in the JSON
envelope, never a 500; security headers on every response; security events logged."""

import json
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest

from ..helpers import KeySet, Settings, header_for, settings_with, sign_raw
from .api import PASSWORD, Api, bearer

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@pytest.mark.parametrize("path", ["/health", "/users/me", "/no/such/path"])
def test_every_response_carries_the_security_headers(api: Api, path: str) -> None:
    reply = api.get(path)
    for name, value in SECURITY_HEADERS.items():
        assert reply.headers[name] == value
    assert reply.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert "Strict-Transport-Security" not in reply.headers  # development: no TLS in front


def test_production_adds_hsts(make_api: Callable[[Settings], Api], settings: Settings) -> None:
    production = {"environment": "production", "argon2_time_cost": 2, "argon2_memory_kib": 19456}
    api = make_api(settings_with(settings, **production))
    assert api.get("/health").headers["Strict-Transport-Security"].startswith("max-age=")


def test_a_body_over_the_bound_is_refused_before_it_is_read(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    api = make_api(settings_with(settings, max_body_bytes=1024))
    big = json.dumps({"username": "alice", "password": "x" * 2000}).encode()
    reply = api.post("/auth/register", content=big, headers={"Content-Type": "application/json"})
    assert reply.status == 413
    assert reply.body["code"] == "body_too_large"
    assert api.register("alice").status == 201  # a normal body still passes


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 20_000 + b"]" * 20_000,  # deeper than Python's recursion limit, under 64 KiB
        b'{"username": "alice", "password": ' + b"9" * 5000 + b"}",
        b'{"username": "alice", "password": "\\ud800"}',
        b"\xff\xfe",
    ],
    ids=["nested-too-deep", "integer-too-long", "lone-surrogate", "not-utf8"],
)
@pytest.mark.parametrize("path", ["/auth/register", "/auth/login"])
def test_malformed_json_is_a_client_error(api: Api, path: str, body: bytes) -> None:
    reply = api.post(path, content=body, headers={"Content-Type": "application/json"})
    assert reply.status in {400, 422}, reply.body
    assert reply.body["code"] == "validation_error"


@pytest.mark.parametrize("username", ["ali\x00ce", "ali\nce", "alice\x7f"])
def test_control_characters_in_credentials_are_refused(api: Api, username: str) -> None:
    form = {"grant_type": "password", "username": username, "password": PASSWORD}
    login = api.post("/auth/login", data=form)
    assert login.status == 400
    assert login.body["error"] == "invalid_request"
    register = api.register(username)
    assert register.status == 422
    password = api.post("/auth/register", json={"username": "bob", "password": "pass\x00word"})
    assert password.status == 422


@pytest.mark.parametrize(
    "changes",
    [{"exp": 10**4000}, {"sid": ["a", "list"]}, {"jti": {"an": "object"}}, {"iat": -(10**30)}],
    ids=["huge-exp", "sid-list", "jti-object", "huge-negative-iat"],
)
def test_a_hand_made_token_with_odd_claims_is_a_401(
    api: Api, keys: KeySet, changes: dict[str, Any]
) -> None:
    user = api.register("alice").body
    claims = jwt.decode(api.login(), options={"verify_signature": False})
    payload = json.dumps({**claims, "sub": user["id"], **changes}).encode()
    reply = api.get("/users/me", token=sign_raw(keys, header_for(keys), payload))
    assert reply.status == 401
    assert reply.body["code"] == "invalid_token"


@pytest.fixture
def unreachable_api(make_api: Callable[[Settings], Api], settings: Settings, tmp_path: Path) -> Api:
    """An app whose SQLite database cannot be opened (its folder is gone)."""
    return make_api(
        settings_with(settings, database_url=f"sqlite:///{tmp_path / 'gone' / 'app.db'}")
    )


def test_a_new_sqlite_database_is_private(
    make_api: Callable[[Settings], Api], settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "private.db"
    make_api(settings_with(settings, database_url=f"sqlite:///{path}")).get("/health")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_readiness_answers_with_the_database(api: Api) -> None:
    reply = api.get("/health/ready")
    assert reply.status == 200
    assert reply.body == {"status": "ready"}


def test_a_database_that_is_away_is_a_503_and_liveness_stays_up(
    unreachable_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    ready = unreachable_api.get("/health/ready")
    assert ready.status == 503
    assert ready.body == {
        "detail": "The service cannot reach its database right now; try again in a few seconds.",
        "code": "service_unavailable",
    }
    assert ready.headers["Retry-After"] == "5"
    for _ in range(3):
        assert unreachable_api.register("alice").status == 503
    form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    assert unreachable_api.post("/auth/login", data=form).status == 503
    assert unreachable_api.get("/health").status == 200
    records = [*caplog.get_records("setup"), *caplog.records]  # the app met it when made
    outage = [r for r in records if "Database unavailable" in r.getMessage()]
    assert len(outage) == 1  # once per outage, not per request
    assert "Traceback" not in caplog.text


def test_security_events_are_logged_without_secrets(
    api: Api, security_events: list[dict[str, Any]]
) -> None:
    user = api.register("alice").body
    form = {"grant_type": "password", "username": "alice", "password": "wrong password"}
    assert api.post("/auth/login", data=form).status == 400
    form["username"] = "nobody"
    assert api.post("/auth/login", data=form).status == 400
    token = api.login("alice")
    assert api.get("/users/me", token="not-a-token").status == 401
    assert api.post("/auth/logout", headers=bearer(token)).status == 204
    assert api.get("/users/me", token=token).status == 401
    seen = [(event["event"], event.get("reason")) for event in security_events]
    assert seen == [
        ("user_registered", None),
        ("login_failed", "wrong_password"),
        ("login_failed", "unknown_user"),
        ("login_succeeded", None),
        ("token_refused", "invalid_token"),
        ("logout", None),
        ("token_refused", "invalid_token"),
    ]
    assert security_events[1]["user_id"] == user["id"]
    assert security_events[5]["user_id"] == user["id"]
    logged = json.dumps(security_events)
    for secret in (PASSWORD, "wrong password", token, "nobody"):
        assert secret not in logged
    assert all(event["time"] and "client" in event for event in security_events)


def test_security_events_name_the_client_behind_a_trusted_proxy(
    make_api: Callable[[Settings], Api], settings: Settings, security_events: list[dict[str, Any]]
) -> None:
    """The address throttling uses, not the proxy's (the test clients' peers: 127.0.0.1, or
    no address at all, which `unix` trusts)."""
    api = make_api(settings_with(settings, trusted_proxies="unix, 127.0.0.1"))
    form = {"grant_type": "password", "username": "nobody", "password": "wrong password"}
    reply = api.post("/auth/login", data=form, headers={"X-Forwarded-For": "192.0.2.9"})
    assert reply.status == 400
    [failed] = [event for event in security_events if event["event"] == "login_failed"]
    assert failed["client"] == "192.0.2.9"


def test_a_replayed_refresh_token_is_logged_as_a_theft_signal(
    make_api: Callable[[Settings], Api], settings: Settings, security_events: list[dict[str, Any]]
) -> None:
    api = make_api(
        settings_with(settings, refresh_strategy="rotating", refresh_reuse_grace_seconds=0)
    )
    api.register("alice")
    form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    tokens = api.post("/auth/login", data=form).body
    refresh = {"refresh_token": tokens["refresh_token"]}
    assert api.post("/auth/refresh", json=refresh).status == 200
    assert api.post("/auth/refresh", json=refresh).status == 400
    [reuse] = [event for event in security_events if event["event"] == "refresh_token_reused"]
    claims = jwt.decode(tokens["refresh_token"], options={"verify_signature": False})
    assert reuse["session_id"] == claims["sid"]
    assert tokens["refresh_token"] not in json.dumps(security_events)


def test_expired_tokens_are_not_logged_as_tracebacks(
    api: Api, keys: KeySet, caplog: pytest.LogCaptureFixture
) -> None:
    user = api.register("alice").body
    claims = jwt.decode(api.login(), options={"verify_signature": False})
    expired = {**claims, "sub": user["id"], "exp": int(time.time()) - 3600}
    reply = api.get(
        "/users/me", token=sign_raw(keys, header_for(keys), json.dumps(expired).encode())
    )
    assert reply.status == 401
    assert reply.body["code"] == "token_expired"
    assert "Traceback" not in caplog.text
