"""GET /.well-known/jwks.json: the public keys for key pairs, a JSON 404 for HMAC; and what
another service, verifying with those keys alone, accepts."""

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import KeySet as JWKSet
from joserfc.jwk import KeySetSerialization

from ..helpers import ALGORITHM, KeySet, Settings, is_hmac, keyring, settings_with
from .api import PASSWORD, Api

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}
HMAC = is_hmac(ALGORITHM)


def test_jwks(api: Api, keys: KeySet) -> None:
    reply = api.get("/.well-known/jwks.json")
    if HMAC:
        assert reply.status == 404
        assert reply.body == {
            "detail": "This service signs with a shared secret (HMAC): it has no public keys.",
            "code": "not_found",
        }
        return
    assert reply.status == 200
    assert reply.headers["Cache-Control"] == "public, max-age=300"
    [jwk] = reply.body["keys"]
    assert jwk["kid"] == keys.kid
    assert jwk["alg"] == ALGORITHM
    assert jwk["use"] == "sig"
    assert "key_ops" not in jwk  # never beside `use` (RFC 7517 section 4.3)
    assert not PRIVATE_MEMBERS & set(jwk)


def verify_elsewhere(token: str, jwks: KeySetSerialization, audience: str) -> dict[str, Any]:
    """What the README tells another service to do, with an independent JOSE library: the
    keys of the JWK Set, the pinned algorithm, `iss`, `aud`, `exp` and the required claims;
    not the header `typ`, to show that the audience alone refuses refresh tokens."""
    claims_registry = jose_jwt.JWTClaimsRegistry(
        leeway=30,
        iss={"essential": True, "value": "test-issuer"},
        aud={"essential": True, "value": audience},
        sub={"essential": True},
        iat={"essential": True},
        exp={"essential": True},
        jti={"essential": True},
    )
    with warnings.catch_warnings():
        # joserfc flags "EdDSA" as deprecated by RFC 9864 (fully-specified "Ed25519").
        warnings.simplefilter("ignore", SecurityWarning)
        verified = jose_jwt.decode(token, JWKSet.import_key_set(jwks), algorithms=[ALGORITHM])
    claims_registry.validate(verified.claims)
    return verified.claims


def test_another_service_accepts_access_tokens_and_refuses_refresh_tokens(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    api = make_api(settings_with(settings, refresh_strategy="stateless"))
    user = api.register("alice").body
    form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    tokens = api.post("/auth/login", data=form).body
    reply = api.get("/.well-known/jwks.json")
    if HMAC:  # no public keys: other services cannot verify, nor forge
        assert reply.status == 404
        return
    jwks = reply.body
    claims = verify_elsewhere(tokens["access_token"], jwks, "test-audience")
    assert claims["sub"] == user["id"]
    with pytest.raises(JoseError):
        verify_elsewhere(tokens["refresh_token"], jwks, "test-audience")
    # Even a service that was (wrongly) told the issuer is the audience refuses them.
    with pytest.raises(JoseError):
        verify_elsewhere(tokens["refresh_token"], jwks, "test-issuer")


def test_tokens_verify_with_the_published_key(api: Api) -> None:
    token = api.signed_in()
    reply = api.get("/.well-known/jwks.json")
    if HMAC:
        assert reply.status == 404
        return
    kid = jwt.get_unverified_header(token)["kid"]
    assert [key["kid"] for key in reply.body["keys"]] == [kid]
    assert verify_elsewhere(token, reply.body, "test-audience")["token_type"] == "access"


def test_the_running_service_follows_its_key_ring(
    make_api: Callable[[Settings], Api],
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`keys rotate` and `keys retire` reach a running service without a restart (within a
    second; here at once): the new key signs, the old one verifies until it is retired, then
    its tokens are refused and it leaves the JWK Set."""
    monkeypatch.setattr(keyring, "RECHECK_SECONDS", 0.0)
    api = make_api(settings_with(settings, jwt_secret=None, jwt_keys_dir=tmp_path / "keys"))
    old_token = api.signed_in("alice")
    ring = keyring.KeyRing(tmp_path / "keys", ALGORITHM)
    new_kid, old_kid = ring.rotate(grace_seconds=3600)
    new_token = api.signed_in("bob")
    assert jwt.get_unverified_header(old_token)["kid"] == old_kid
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    assert api.get("/users/me", token=old_token).status == 200  # trusted during its grace
    ring.retire(everything=True)
    assert api.get("/users/me", token=old_token).status == 401
    assert api.get("/users/me", token=new_token).status == 200
    if not HMAC:
        published = api.get("/.well-known/jwks.json").body
        assert [key["kid"] for key in published["keys"]] == [new_kid]
