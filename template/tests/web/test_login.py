"""POST /auth/login, the OAuth2 token endpoint (RFC 6749): the password grant as a form or
JSON, and errors as section 5.2 says."""

from typing import Any

import pytest

from ..helpers import Settings
from .api import PASSWORD, Api, Reply

WRONG_CREDENTIALS = {
    "error": "invalid_grant",
    "error_description": "Incorrect username or password.",
    "detail": "Incorrect username or password.",
    "code": "invalid_credentials",
}


def assert_token_error(reply: Reply, error: str, code: str) -> None:
    """RFC 6749 section 5.2: 400, `error` and `error_description`, beside our `code`."""
    assert reply.status == 400, reply.body
    assert reply.body["error"] == error
    assert reply.body["code"] == code
    assert reply.body["error_description"] == reply.body["detail"]
    assert "WWW-Authenticate" not in reply.headers
    assert reply.headers["Cache-Control"] == "no-store"


def test_login_with_the_oauth2_form(api: Api, settings: Settings) -> None:
    api.register("alice")
    reply = api.post(
        "/auth/login", data={"grant_type": "password", "username": "alice", "password": PASSWORD}
    )
    assert reply.status == 200
    refresh_fields = {"refresh_token", "refresh_expires_in"}
    expected = {"access_token", "token_type", "expires_in"}
    assert set(reply.body) == (
        expected if settings.refresh_strategy == "none" else expected | refresh_fields
    )
    assert reply.body["token_type"] == "bearer"
    assert reply.body["expires_in"] == 15 * 60
    assert isinstance(reply.body["access_token"], str)


def test_token_responses_are_never_cached(api: Api) -> None:
    """RFC 6749 section 5.1: tokens must not be stored by caches on the way."""
    api.register("alice")
    reply = api.post("/auth/login", json={"username": "alice", "password": PASSWORD})
    assert reply.status == 200
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.headers["Pragma"] == "no-cache"


@pytest.mark.parametrize("grant", [{}, {"grant_type": "password"}], ids=["implied", "explicit"])
def test_login_with_json(api: Api, grant: dict[str, Any]) -> None:
    """JSON logins may leave `grant_type` out: it is the password grant."""
    api.register("alice")
    reply = api.post("/auth/login", json={"username": "alice", "password": PASSWORD, **grant})
    assert reply.status == 200
    assert reply.body["token_type"] == "bearer"


def test_login_name_ignores_case(api: Api) -> None:
    api.register("Alice")
    assert api.login("aLiCe")


@pytest.mark.parametrize(("username", "password"), [("alice", "wrong password"), ("bob", PASSWORD)])
def test_wrong_password_and_unknown_user_get_the_same_invalid_grant(
    api: Api, username: str, password: str
) -> None:
    api.register("alice")
    form = {"grant_type": "password", "username": username, "password": password}
    reply = api.post("/auth/login", data=form)
    assert_token_error(reply, "invalid_grant", "invalid_credentials")
    assert reply.body == WRONG_CREDENTIALS


@pytest.mark.parametrize(
    "body",
    [
        {"grant_type": "password", "username": "alice"},
        {"grant_type": "password", "password": PASSWORD},
        {"grant_type": "password", "username": "", "password": PASSWORD},
    ],
)
def test_incomplete_login_is_an_invalid_request(api: Api, body: dict[str, Any]) -> None:
    assert_token_error(api.post("/auth/login", data=body), "invalid_request", "validation_error")


def test_a_form_without_grant_type_is_an_invalid_request(api: Api) -> None:
    api.register("alice")
    reply = api.post("/auth/login", data={"username": "alice", "password": PASSWORD})
    assert_token_error(reply, "invalid_request", "validation_error")
    assert reply.body["detail"].startswith("grant_type is required in a form: send")


@pytest.mark.parametrize("grant_type", ["bogus", "client_credentials", "authorization_code", ""])
def test_another_grant_type_is_refused(api: Api, grant_type: str) -> None:
    api.register("alice")
    form = {"grant_type": grant_type, "username": "alice", "password": PASSWORD}
    reply = api.post("/auth/login", data=form)
    assert_token_error(reply, "unsupported_grant_type", "unsupported_grant_type")
    as_json = api.post("/auth/login", json=form)
    assert_token_error(as_json, "unsupported_grant_type", "unsupported_grant_type")


def test_a_repeated_parameter_is_refused(api: Api) -> None:
    """RFC 6749 section 3.2: parameters must not be included more than once."""
    api.register("alice")
    body = b"grant_type=password&username=mallory&username=alice&password=correct+horse+battery"
    reply = api.post(
        "/auth/login",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_token_error(reply, "invalid_request", "validation_error")
    assert reply.body["detail"] == "Send each parameter once; repeated: username."


def test_login_body_that_is_not_json_is_an_invalid_request(api: Api) -> None:
    reply = api.post("/auth/login", content=b"{", headers={"Content-Type": "application/json"})
    assert_token_error(reply, "invalid_request", "validation_error")
    assert reply.body["detail"] == "The request body must be a JSON object."
