"""The OpenAPI description (the same document for both frameworks, built by the core), and the
interactive docs served from this service."""

import re
import secrets
from collections.abc import Callable
from typing import Any

import pytest

from ..helpers import Settings, is_hmac, settings_with
from .api import PASSWORD, Api, bearer

#: Every operation of the contract; a variant without a feature leaves its routes out.
ALWAYS = {
    ("get", "/health"),
    ("get", "/health/ready"),
    ("post", "/auth/register"),
    ("post", "/auth/login"),
    ("post", "/auth/logout"),
    ("post", "/auth/logout-all"),
    ("post", "/auth/password"),
    ("get", "/users/me"),
    ("put", "/users/me/email"),
    ("delete", "/users/me"),
}
RESET = {("post", "/auth/password-reset"), ("post", "/auth/password-reset/confirm")}


def operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in document["paths"].items() for method in item}


def test_the_description_declares_the_password_flow_at_the_login_route(api: Api) -> None:
    document = api.get("/openapi.json").body
    assert document["openapi"].startswith("3.1")
    schemes = document["components"]["securitySchemes"]
    assert schemes == {
        "OAuth2PasswordBearer": {
            "type": "oauth2",
            "flows": {
                "password": {
                    "scopes": {"admin": "Manage the service's users"},  # claims.SCOPES
                    "tokenUrl": "/auth/login",
                }
            },
        }
    }
    assert document["paths"]["/users/me"]["get"]["security"] == [{"OAuth2PasswordBearer": []}]
    login_body = document["paths"]["/auth/login"]["post"]["requestBody"]["content"]
    assert set(login_body) == {"application/x-www-form-urlencoded", "application/json"}


def test_routes_a_variant_lacks_are_not_described(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    """Routes a variant does not have are absent; the ones it has are all there."""
    full = make_api(settings_with(settings, refresh_strategy="rotating")).get("/openapi.json")
    hmac = is_hmac(settings.jwt_algorithm)  # no public keys: no JWK Set
    keys = set() if hmac else {("get", "/.well-known/jwks.json")}
    assert operations(full.body) == ALWAYS | RESET | {("post", "/auth/refresh")} | keys
    bare = settings_with(
        settings,
        refresh_strategy="none",
        jwt_algorithm="HS256",
        jwt_secret=secrets.token_hex(32),
        environment="production",
        api_docs=True,
        argon2_time_cost=2,
        argon2_memory_kib=19456,
    )
    described = operations(make_api(bare).get("/openapi.json").body)
    assert described == ALWAYS  # no refresh, no JWK Set (HMAC), no reset (no mail server)


def test_every_described_route_answers_with_a_described_status(api: Api) -> None:
    """Unauthenticated and empty-bodied, each route answers a status its description lists,
    with the body it describes (the service's envelope for errors)."""
    document = api.get("/openapi.json").body
    for path, item in document["paths"].items():
        for method, operation in item.items():
            reply = api.request(method.upper(), path)
            assert str(reply.status) in operation["responses"], (method, path, reply.status)
            if reply.status >= 400:
                assert {"detail", "code"} <= set(reply.body), (method, path, reply.body)


def test_described_errors_use_the_envelope_the_service_sends(api: Api) -> None:
    document = api.get("/openapi.json").body
    schemas = document["components"]["schemas"]
    assert set(schemas["ErrorOut"]["required"]) == {"detail", "code"}
    login = document["paths"]["/auth/login"]["post"]["responses"]
    assert login["400"]["content"]["application/json"]["schema"]["$ref"].endswith("OAuthErrorOut")
    assert set(schemas["OAuthErrorOut"]["required"]) == {
        "error",
        "error_description",
        "detail",
        "code",
    }
    assert "Retry-After" in login["429"]["headers"]
    reply = api.post(
        "/auth/login", data={"grant_type": "password", "username": "x", "password": "y"}
    )
    assert reply.status == 400
    assert set(reply.body) == set(schemas["OAuthErrorOut"]["required"])


def test_only_routes_that_refuse_other_types_describe_a_415(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    """The token routes refuse a body that is neither a form nor JSON (415); logout reports it
    in its 200 instead, having logged out all the same."""
    api = make_api(settings_with(settings, refresh_strategy="rotating"))
    paths = api.get("/openapi.json").body["paths"]
    for path in ("/auth/login", "/auth/refresh", "/auth/register"):
        assert "415" in paths[path]["post"]["responses"], path
    assert "415" not in paths["/auth/logout"]["post"]["responses"]
    reply = api.post("/auth/login", content=b"{}", headers={"Content-Type": "text/plain"})
    assert reply.status == 415


COOKIE_ROUTES = {"/auth/login": "200", "/auth/refresh": "200", "/auth/password": "200"}


def test_cookie_mode_is_described(make_api: Callable[[Settings], Api], settings: Settings) -> None:
    """With REFRESH_TOKEN_COOKIE the description says what a browser client sends and gets: the
    `X-Requested-With` header, the cookie (by the name the service sets), `Set-Cookie`, and a
    refresh without a body; without it, none of that."""
    bearer_only = settings_with(settings, refresh_strategy="rotating")
    plain = make_api(bearer_only).get("/openapi.json").body["paths"]
    api = make_api(settings_with(bearer_only, refresh_token_cookie=True))
    paths = api.get("/openapi.json").body["paths"]
    for path, success in {**COOKIE_ROUTES, "/auth/logout": "204"}.items():
        operation = paths[path]["post"]
        headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
        assert headers["X-Requested-With"]["required"] is False, path
        assert "Set-Cookie" in operation["responses"][success]["headers"], path
        assert "parameters" not in plain[path]["post"], path
        assert "Set-Cookie" not in plain[path]["post"]["responses"][success].get("headers", {})
    read = {
        (path, parameter["name"])
        for path, item in paths.items()
        for operation in item.values()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "cookie"
    }
    assert read == {
        (path, "refresh_token") for path in ("/auth/login", "/auth/refresh", "/auth/logout")
    }
    refresh = paths["/auth/refresh"]["post"]["requestBody"]
    assert refresh["required"] is False
    assert plain["/auth/refresh"]["post"]["requestBody"]["required"] is True
    assert refresh["content"]["application/json"]["schema"]["required"] == []
    # The service does as described: the cookie it sets is the one described, and a refresh
    # with the header and the cookie but no body is answered.
    api.register("alice")
    form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    login = api.post("/auth/login", data=form, headers={"X-Requested-With": "fetch"})
    cookie = login.headers["Set-Cookie"].split(";")[0]
    assert cookie.split("=")[0] == "refresh_token"
    again = api.post("/auth/refresh", headers={"X-Requested-With": "fetch", "Cookie": cookie})
    assert again.status == 200


def test_the_jwk_set_is_described_as_the_service_sends_it(api: Api, settings: Settings) -> None:
    if is_hmac(settings.jwt_algorithm):
        return  # no public keys, no JWK Set (test_routes_a_variant_lacks_are_not_described)
    document = api.get("/openapi.json").body
    answer = document["paths"]["/.well-known/jwks.json"]["get"]["responses"]["200"]
    schema = answer["content"]["application/json"]["schema"]
    assert schema["required"] == ["keys"]
    item = schema["properties"]["keys"]["items"]
    keys = api.get("/.well-known/jwks.json").body["keys"]
    assert keys
    for key in keys:
        assert set(item["required"]) <= set(key)
        assert all(isinstance(value, str) for value in key.values())


def test_login_accepts_what_swagger_ui_sends(api: Api) -> None:
    api.register("alice")
    form = {
        "grant_type": "password",
        "username": "alice",
        "password": PASSWORD,
        "scope": "",
        "client_id": "",
        "client_secret": "",
    }
    reply = api.post("/auth/login", data=form)
    assert reply.status == 200
    assert reply.body["token_type"] == "bearer"
    assert api.get("/users/me", token=reply.body["access_token"]).status == 200
    assert (
        api.request("POST", "/auth/logout-all", headers=bearer(reply.body["access_token"])).status
        == 204
    )


def test_docs_page_is_served_from_this_service_not_a_cdn(api: Api) -> None:
    page = api.get("/docs")
    assert page.status == 200
    assert "swagger-ui" in page.text
    assert "cdn." not in page.text
    scripts = re.findall(r'<script src="([^"]+)"', page.text)
    assert scripts
    for src in scripts:
        assert src.startswith("/")
        asset = api.get(src)
        assert asset.status == 200
        assert len(asset.text) > 10_000
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


PRODUCTION = {"environment": "production", "argon2_time_cost": 2, "argon2_memory_kib": 19456}


@pytest.mark.parametrize("path", ["/docs", "/openapi.json"])
def test_docs_are_off_in_production_unless_asked_for(
    make_api: Callable[[Settings], Api], settings: Settings, path: str
) -> None:
    assert make_api(settings_with(settings, **PRODUCTION)).get(path).status == 404
    assert make_api(settings_with(settings, api_docs=True, **PRODUCTION)).get(path).status == 200
