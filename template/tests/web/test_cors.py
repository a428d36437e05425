"""Cross-origin requests: none allowed by default; an allowlist grants exactly its origins,
credentials only with the refresh-token cookie; the JWK Set is public to every origin."""

from collections.abc import Callable
from typing import Any

import pytest

from ..helpers import Settings, settings_with
from .api import Api, Headers

APP = "https://app.example.com"
OTHER = "https://evil.example.net"


def preflight(api: Api, origin: str, path: str = "/users/me", **headers: str) -> Headers:
    asked = {
        "Origin": origin,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
        **headers,
    }
    reply = api.request("OPTIONS", path, headers=asked)
    assert reply.status == 204
    return reply.headers


@pytest.fixture
def cors_api(make_api: Callable[[Settings], Api], settings: Settings) -> Api:
    return make_api(settings_with(settings, cors_allowed_origins=f"{APP}, http://localhost:5173"))


def test_no_cors_headers_by_default(api: Api) -> None:
    reply = api.request("GET", "/health", headers={"Origin": APP})
    assert "Access-Control-Allow-Origin" not in reply.headers
    assert "Access-Control-Allow-Origin" not in preflight(api, APP)


def test_an_allowed_origin_may_call_the_api(cors_api: Api) -> None:
    granted = preflight(cors_api, APP)
    assert granted["Access-Control-Allow-Origin"] == APP
    methods = set(granted["Access-Control-Allow-Methods"].split(", "))
    assert methods == {"GET", "HEAD", "POST", "PUT", "DELETE"}
    assert (
        granted["Access-Control-Allow-Headers"] == "authorization, content-type, x-requested-with"
    )
    assert "Access-Control-Allow-Credentials" not in granted
    reply = cors_api.request("GET", "/users/me", headers={"Origin": APP})
    assert reply.status == 401
    assert reply.headers["Access-Control-Allow-Origin"] == APP
    assert "WWW-Authenticate" in reply.headers["Access-Control-Expose-Headers"]
    assert reply.headers["Vary"] == "Origin"


def test_another_origin_gets_no_grant(cors_api: Api) -> None:
    assert "Access-Control-Allow-Origin" not in preflight(cors_api, OTHER)
    reply = cors_api.request("GET", "/health", headers={"Origin": OTHER})
    assert "Access-Control-Allow-Origin" not in reply.headers


@pytest.mark.parametrize(
    "asked",
    [{"Access-Control-Request-Method": "PATCH"}, {"Access-Control-Request-Headers": "x-custom"}],
    ids=["method", "header"],
)
def test_a_preflight_asking_for_more_than_the_api_uses_gets_no_grant(
    cors_api: Api, asked: dict[str, Any]
) -> None:
    assert "Access-Control-Allow-Origin" not in preflight(cors_api, APP, **asked)


def test_the_jwk_set_is_public_to_every_origin(api: Api) -> None:
    reply = api.request("GET", "/.well-known/jwks.json", headers={"Origin": OTHER})
    assert reply.headers["Access-Control-Allow-Origin"] == "*"


def test_credentials_are_allowed_only_with_the_refresh_token_cookie(
    make_api: Callable[[Settings], Api], settings: Settings, cors_api: Api
) -> None:
    cookie_api = make_api(
        settings_with(
            settings,
            cors_allowed_origins=APP,
            refresh_token_cookie=True,
            refresh_strategy="rotating",  # the cookie carries a refresh token
        )
    )
    assert preflight(cookie_api, APP)["Access-Control-Allow-Credentials"] == "true"
    reply = cookie_api.request("GET", "/health", headers={"Origin": APP})
    assert reply.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Access-Control-Allow-Origin" not in preflight(cookie_api, OTHER)
    jwks = cookie_api.request("GET", "/.well-known/jwks.json", headers={"Origin": OTHER})
    assert jwks.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in jwks.headers
    assert "Access-Control-Allow-Credentials" not in preflight(cors_api, APP)
