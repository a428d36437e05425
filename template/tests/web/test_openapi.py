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
