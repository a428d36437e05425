"""Routes that need only a valid token, not its user (`AccessClaims` / `token_required`)."""

import time
from collections.abc import Callable

import pytest

from ..helpers import Settings
from .api import Api

PATH = "/test/token-only"


@pytest.fixture
def token_api(app_api: Api, add_token_route: Callable[[str], None]) -> Api:
    add_token_route(PATH)
    return app_api


def test_answers_the_token_subject(token_api: Api) -> None:
    user = token_api.register("alice").body
    token = token_api.login("alice")
    for _ in range(2):  # the second request finds the token already verified
        reply = token_api.get(PATH, token=token)
        assert reply.status == 200
        assert reply.body == {"sub": user["id"]}


def test_without_a_token(token_api: Api) -> None:
    reply = token_api.get(PATH)
    assert reply.status == 401
    assert reply.body["code"] == "not_authenticated"


def test_a_tampered_token_is_refused_after_the_real_one_was_accepted(token_api: Api) -> None:
    token = token_api.signed_in()
    assert token_api.get(PATH, token=token).status == 200
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    reply = token_api.get(PATH, token=tampered)
    assert reply.status == 401
    assert reply.body["code"] == "invalid_token"


def test_logout_in_another_process_is_enforced_here(
    token_api: Api, make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    """This app verified the token before; a logout through another app (another process or
    instance, sharing the database) stops it here too: at once on SQLite (every check reads
    the database), within a fraction of a second on PostgreSQL (a notification)."""
    token = token_api.signed_in()
    assert token_api.get(PATH, token=token).status == 200
    assert token_api.get("/users/me", token=token).status == 200
    other = make_api(settings)
    assert other.post("/auth/logout", headers={"Authorization": f"Bearer {token}"}).status == 204
    deadline = time.monotonic() + (0 if settings.database_url.startswith("sqlite") else 2)
    for path in (PATH, "/users/me"):
        while (reply := token_api.get(path, token=token)).status == 200:
            assert time.monotonic() < deadline, f"{path} still accepts the token"
            time.sleep(0.01)
        assert reply.status == 401
        assert reply.body["code"] == "invalid_token"
