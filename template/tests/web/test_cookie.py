"""The refresh token in an HttpOnly cookie for browser clients (REFRESH_TOKEN_COOKIE): only
requests that send `X-Requested-With` use it (the CSRF defence); others use the body as before.
tests/test_browser.py in the template drives the same in a real browser."""

from collections.abc import Callable, Mapping

import jwt
import pytest

from ..helpers import Settings, settings_with
from .api import PASSWORD, Api, Reply, bearer

BROWSER = {"X-Requested-With": "fetch"}
LOGIN = {"grant_type": "password", "username": "alice", "password": PASSWORD}


@pytest.fixture
def cookie_api(make_api: Callable[[Settings], Api], settings: Settings) -> Api:
    api = make_api(settings_with(settings, refresh_strategy="rotating", refresh_token_cookie=True))
    assert api.register("alice").status == 201
    return api


def set_cookie(reply: Reply) -> dict[str, str]:
    """The attributes of the response's `Set-Cookie` (names lower-cased), and its value."""
    first, *attributes = reply.headers["Set-Cookie"].split("; ")
    name, value = first.split("=", 1)
    parsed = {"name": name, "value": value}
    for attribute in attributes:
        key, _, setting = attribute.partition("=")
        parsed[key.lower()] = setting or "true"
    return parsed


def cookie_header(cookie: Mapping[str, str]) -> dict[str, str]:
    return {"Cookie": f"{cookie['name']}={cookie['value']}"}


def test_a_browser_login_gets_its_refresh_token_in_an_httponly_cookie(cookie_api: Api) -> None:
    reply = cookie_api.post("/auth/login", data=LOGIN, headers=BROWSER)
    assert reply.status == 200
    assert "refresh_token" not in reply.body
    assert reply.body["access_token"]
    cookie = set_cookie(reply)
    assert cookie["name"] == "refresh_token"  # development: plain HTTP, no `Secure`
    assert cookie["httponly"] == "true"
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/auth"
    assert int(cookie["max-age"]) == reply.body["refresh_expires_in"]
    assert "secure" not in cookie


def test_outside_development_the_cookie_is_secure(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    production = settings_with(
        settings,
        environment="production",
        refresh_strategy="rotating",
        argon2_time_cost=2,
        argon2_memory_kib=19456,
        refresh_token_cookie=True,
    )
    api = make_api(production)
    api.register("alice")
    cookie = set_cookie(api.post("/auth/login", data=LOGIN, headers=BROWSER))
    assert cookie["name"] == "__Secure-refresh_token"
    assert cookie["secure"] == "true"


def test_other_clients_keep_the_refresh_token_in_the_body(cookie_api: Api) -> None:
    reply = cookie_api.post("/auth/login", data=LOGIN)
    assert reply.body["refresh_token"]
    assert "Set-Cookie" not in reply.headers


def test_refresh_reads_the_cookie_only_with_the_header(cookie_api: Api) -> None:
    cookie = set_cookie(cookie_api.post("/auth/login", data=LOGIN, headers=BROWSER))
    forged = cookie_api.post("/auth/refresh", headers=cookie_header(cookie))  # a form could
    assert forged.status == 400
    assert forged.body["error"] == "invalid_request"
    reply = cookie_api.post("/auth/refresh", headers={**BROWSER, **cookie_header(cookie)})
    assert reply.status == 200, reply.body
    assert "refresh_token" not in reply.body
    rotated = set_cookie(reply)
    assert rotated["value"] != cookie["value"]
    assert cookie_api.get("/users/me", token=reply.body["access_token"]).status == 200
    again = cookie_api.post("/auth/refresh", headers={**BROWSER, **cookie_header(rotated)})
    assert again.status == 200


def test_the_token_endpoint_refreshes_from_the_cookie_too(cookie_api: Api) -> None:
    cookie = set_cookie(cookie_api.post("/auth/login", data=LOGIN, headers=BROWSER))
    form = {"grant_type": "refresh_token"}
    reply = cookie_api.post("/auth/login", data=form, headers={**BROWSER, **cookie_header(cookie)})
    assert reply.status == 200, reply.body
    assert set_cookie(reply)["value"] != cookie["value"]


def test_logout_ends_the_cookies_login_and_deletes_the_cookie(cookie_api: Api) -> None:
    login = cookie_api.post("/auth/login", data=LOGIN, headers=BROWSER)
    cookie = set_cookie(login)
    headers = {**BROWSER, **cookie_header(cookie), **bearer(login.body["access_token"])}
    reply = cookie_api.post("/auth/logout", headers=headers)
    assert reply.status == 204
    cleared = set_cookie(reply)
    assert (cleared["name"], cleared["value"], cleared["max-age"]) == ("refresh_token", "", "0")
    refused = cookie_api.post("/auth/refresh", headers={**BROWSER, **cookie_header(cookie)})
    assert refused.status == 400
    assert refused.body["detail"] == "The token has been revoked."


def test_a_password_change_moves_the_new_login_into_the_cookie(cookie_api: Api) -> None:
    login = cookie_api.post("/auth/login", data=LOGIN, headers=BROWSER)
    change = {"current_password": PASSWORD, "new_password": "a new violet kettle"}
    headers = {**BROWSER, **bearer(login.body["access_token"])}
    reply = cookie_api.post("/auth/password", json=change, headers=headers)
    assert reply.status == 200, reply.body
    assert "refresh_token" not in reply.body
    assert set_cookie(reply)["value"] != set_cookie(login)["value"]


def test_a_refresh_without_any_token_says_what_to_send(cookie_api: Api) -> None:
    reply = cookie_api.post("/auth/refresh", headers=BROWSER)  # the cookie is gone: logged out
    assert reply.status == 400
    assert reply.body["error"] == "invalid_request"
    assert reply.body["detail"].startswith("No refresh token was sent")


def cookie_api_with_grace(
    make_api: Callable[[Settings], Api], settings: Settings, grace: int
) -> Api:
    options = {"refresh_token_cookie": True, "refresh_reuse_grace_seconds": grace}
    api = make_api(settings_with(settings, refresh_strategy="rotating", **options))
    assert api.register("alice").status == 201
    return api


def test_two_tabs_refreshing_with_one_cookie_keep_the_login(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    """Within the grace period (REFRESH_REUSE_GRACE_SECONDS) a second refresh with the same
    cookie, as a second tab sends before it sees the first's new cookie, is answered too, for
    the same login; the login lives on."""
    api = cookie_api_with_grace(make_api, settings, 10)
    cookie = set_cookie(api.post("/auth/login", data=LOGIN, headers=BROWSER))
    old = {**BROWSER, **cookie_header(cookie)}
    first, second = api.post("/auth/refresh", headers=old), api.post("/auth/refresh", headers=old)
    assert (first.status, second.status) == (200, 200), second.body
    sessions = {
        jwt.decode(set_cookie(reply)["value"], options={"verify_signature": False})["sid"]
        for reply in (first, second)
    }
    assert len(sessions) == 1
    for reply in (first, second):
        assert api.get("/users/me", token=reply.body["access_token"]).status == 200
    latest = {**BROWSER, **cookie_header(set_cookie(second))}
    assert api.post("/auth/refresh", headers=latest).status == 200


def test_a_replayed_cookie_ends_the_login(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    """Without a grace period, a refresh with a cookie already rotated away is reuse: refused,
    and the login ends, so the rotated cookie (the thief's or the victim's) is refused too."""
    api = cookie_api_with_grace(make_api, settings, 0)
    cookie = set_cookie(api.post("/auth/login", data=LOGIN, headers=BROWSER))
    rotated = api.post("/auth/refresh", headers={**BROWSER, **cookie_header(cookie)})
    assert rotated.status == 200
    replay = api.post("/auth/refresh", headers={**BROWSER, **cookie_header(cookie)})
    assert replay.status == 400
    assert (replay.body["error"], replay.body["code"]) == ("invalid_grant", "refresh_token_reused")
    after = api.post("/auth/refresh", headers={**BROWSER, **cookie_header(set_cookie(rotated))})
    assert after.status == 400
    assert api.get("/users/me", token=rotated.body["access_token"]).status == 401
