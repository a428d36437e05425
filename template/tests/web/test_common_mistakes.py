"""One test per mistake of the blog post this template began from: token code as it is often
written, and how the rendered project avoids each mistake."""

import time
from collections.abc import Callable

import jwt
import pytest

from ..helpers import KeySet
from .api import Api


def test_tokens_expire(api: Api) -> None:
    """The article issued tokens without `exp`, valid forever."""
    claims = jwt.decode(api.signed_in(), options={"verify_signature": False})
    assert claims["exp"] > time.time()
    assert claims["exp"] - claims["iat"] == 15 * 60


def test_tokens_carry_sub_iss_aud_jti_and_a_type(api: Api) -> None:
    """The article's tokens had no `sub`, `iss`, `aud` or `jti`."""
    user = api.register("alice").body
    claims = jwt.decode(api.login(), options={"verify_signature": False})
    assert claims["sub"] == user["id"]
    assert claims["iss"] == "test-issuer"
    assert claims["aud"] == "test-audience"
    assert claims["jti"]
    assert claims["token_type"] == "access"


def test_token_is_a_string_used_as_is(api: Api) -> None:
    """The article called `.decode('utf-8')` on PyJWT 2's `str` token, which crashes."""
    token = api.signed_in()
    assert isinstance(token, str)
    assert api.get("/users/me", token=token).status == 200


def test_bearer_prefix_is_stripped_before_decoding(api: Api) -> None:
    """The article passed `Bearer <token>` whole to `jwt.decode`, refusing every request."""
    token = api.signed_in()
    reply = api.request("GET", "/users/me", headers={"Authorization": f"Bearer {token}"})
    assert reply.status == 200


def test_two_protected_routes_coexist(
    app_api: Api, add_protected_route: Callable[[str], None]
) -> None:
    """The article's decorator lacked `functools.wraps`: a second protected view clashed."""
    add_protected_route("/test/second-protected")
    token = app_api.signed_in()
    assert app_api.get("/users/me", token=token).status == 200
    reply = app_api.get("/test/second-protected", token=token)
    assert reply.status == 200
    assert reply.body == {"username": "alice"}
    assert app_api.get("/test/second-protected").status == 401


def test_protected_view_receives_the_user(api: Api) -> None:
    """The article's decorator threw the decoded claims away."""
    user = api.register("alice").body
    assert api.get("/users/me", token=api.login()).body == user


def test_login_and_register_need_no_token(api: Api) -> None:
    """The article's `before_request` check also blocked the login route."""
    assert api.register("alice").status == 201
    assert api.login("alice")
    assert api.get("/health").status == 200


def test_login_checks_the_password(api: Api) -> None:
    """The article 'authenticated' by returning user 1 without a password check."""
    api.register("alice")
    form = {"grant_type": "password", "username": "alice", "password": "not her password"}
    reply = api.post("/auth/login", data=form)
    assert reply.status == 400
    assert reply.body["error"] == "invalid_grant"


def test_secret_is_not_hard_coded(api: Api, keys: KeySet) -> None:
    """The article hard-coded a 13-byte secret; ours come from settings, and a weak one fails."""
    token = api.signed_in()
    assert jwt.get_unverified_header(token)["kid"] == keys.kid
    claims = jwt.decode(token, options={"verify_signature": False})
    with pytest.warns(jwt.InsecureKeyLengthWarning):
        weak = jwt.encode(claims, "s3cr3t-13byte", "HS256", {"kid": keys.kid})
    assert api.get("/users/me", token=weak).status == 401


def test_every_401_carries_www_authenticate(api: Api) -> None:
    """The article's 401s had no `WWW-Authenticate` header (RFC 6750 section 3)."""
    api.register("alice")
    replies = [api.get("/users/me"), api.get("/users/me", token="bad"), api.post("/auth/logout")]
    for reply in replies:
        assert reply.status == 401
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
