"""POST /auth/login: the OAuth2 password form or JSON."""

import pytest

from .api import PASSWORD, Api

WRONG_CREDENTIALS = {"detail": "Incorrect username or password.", "code": "invalid_credentials"}


def test_login_with_the_oauth2_form(api: Api, settings) -> None:
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


def test_login_with_json(api: Api) -> None:
    api.register("alice")
    reply = api.post("/auth/login", json={"username": "alice", "password": PASSWORD})
    assert reply.status == 200
    assert reply.body["token_type"] == "bearer"


def test_login_name_ignores_case(api: Api) -> None:
    api.register("Alice")
    assert api.login("aLiCe")


@pytest.mark.parametrize(("username", "password"), [("alice", "wrong password"), ("bob", PASSWORD)])
def test_wrong_password_and_unknown_user_get_the_same_401(
    api: Api, username: str, password: str
) -> None:
    api.register("alice")
    reply = api.post("/auth/login", data={"username": username, "password": password})
    assert reply.status == 401
    assert reply.body == WRONG_CREDENTIALS
    assert reply.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "body", [{"username": "alice"}, {"password": PASSWORD}, {"username": "", "password": PASSWORD}]
)
def test_incomplete_login_is_a_422(api: Api, body: dict) -> None:
    reply = api.post("/auth/login", data=body)
    assert reply.status == 422
    assert reply.body["code"] == "validation_error"


def test_login_body_that_is_not_json_is_a_422(api: Api) -> None:
    reply = api.post("/auth/login", content=b"{", headers={"Content-Type": "application/json"})
    assert reply.status == 422
    assert reply.body == {
        "detail": "The request body must be a JSON object.",
        "code": "validation_error",
    }
