"""Every malicious token gets a 401 with the invalid_token challenge, never a 500.

Each test forges a token the way an attacker would and presents it to GET /users/me.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from ..helpers import (
    ALGORITHM,
    KeySet,
    Settings,
    access_claims,
    b64,
    header_for,
    key_material,
    key_settings,
    keyset_of,
    settings_with,
    sign_raw,
)
from .api import Api

HMAC_DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


@pytest.fixture
def subject(api: Api) -> str:
    """A real user's id, so the only thing wrong with each token is the attack."""
    user_id: str = api.register("victim").body["id"]
    return user_id


def assert_refused(api: Api, token: str) -> None:
    reply = api.get("/users/me", token=token)
    assert reply.status == 401, reply.body
    assert reply.body["code"] in {"invalid_token", "token_expired"}
    assert reply.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def payload(claims: dict[str, Any]) -> bytes:
    return json.dumps(claims).encode()


def test_a_correct_forgery_with_the_real_key_is_accepted(
    api: Api, keys: KeySet, subject: str
) -> None:
    """The control: the forging helpers make tokens the service accepts, so refusals mean something."""
    token = sign_raw(keys, header_for(keys), payload(access_claims(subject)))
    reply = api.get("/users/me", token=token)
    assert reply.status == 200
    assert reply.body["id"] == subject


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_unsigned_token(api: Api, keys: KeySet, subject: str, alg: str) -> None:
    header = b64(json.dumps(header_for(keys, alg=alg)).encode())
    assert_refused(api, f"{header}.{b64(payload(access_claims(subject)))}.")


def hmac_token(alg: str, secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(payload(claims))}".encode()
    return f"{signing_input.decode()}.{b64(hmac.new(secret, signing_input, HMAC_DIGESTS[alg]).digest())}"


@pytest.mark.parametrize("alg", [alg for alg in HMAC_DIGESTS if alg != ALGORITHM])
def test_algorithm_confusion(api: Api, keys: KeySet, subject: str, alg: str) -> None:
    """An HMAC token keyed with what an attacker can know: the public key PEM, or our secret."""
    verifying_key = keys.current_key.verifying_key  # for HMAC, the secret
    if isinstance(verifying_key, bytes):
        known = verifying_key
    else:
        known = verifying_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    token = hmac_token(alg, known, header_for(keys, alg=alg), access_claims(subject))
    assert_refused(api, token)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: token.rsplit(".", 1)[0] + ".",
        lambda token: token[:-4],
        lambda token: token.rsplit(".", 1)[0],
        lambda token: token + ".extra",
        lambda token: token.replace(".", "..", 1),
        lambda token: "not-a-jwt",
        lambda token: "a.b.c",
    ],
    ids=["stripped", "truncated", "two-parts", "four-parts", "empty-part", "garbage", "junk"],
)
def test_broken_signature_or_structure(
    api: Api, keys: KeySet, subject: str, mangle: Callable[[str], str]
) -> None:
    token = sign_raw(keys, header_for(keys), payload(access_claims(subject)))
    assert_refused(api, mangle(token))


def test_all_zero_signature(api: Api, keys: KeySet, subject: str) -> None:
    """For ECDSA this is the "psychic signature" of CVE-2022-21449: r = s = 0."""
    token = sign_raw(keys, header_for(keys), payload(access_claims(subject)))
    head, body, signature = token.split(".")
    length = len(jwt.utils.base64url_decode(signature))
    assert_refused(api, f"{head}.{body}.{b64(bytes(length))}")


def test_tampered_payload(api: Api, keys: KeySet, subject: str) -> None:
    other = api.register("attacker").body["id"]
    head, _, signature = sign_raw(keys, header_for(keys), payload(access_claims(other))).split(".")
    assert_refused(api, f"{head}.{b64(payload(access_claims(subject)))}.{signature}")


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": int(time.time()) - 120},  # beyond the default leeway (30 s)
        {"nbf": int(time.time()) + 3600},
        {"iat": int(time.time()) + 3600},
        {"iss": "https://evil.example"},
        {"aud": "another-service"},
        {"aud": ["test-audience", "another-service"]},
        {"token_type": "refresh"},
        {"token_type": "id"},
        {"aud": "test-issuer/refresh"},
        {"sub": 1},
        {"exp": "never"},
        {"exp": float("inf")},
        {"iat": float("nan")},
        {"exp": time.time() + 60},  # the service issues whole seconds only
    ],
    ids=[
        "expired",
        "nbf-future",
        "iat-future",
        "wrong-iss",
        "wrong-aud",
        "aud-list",
        "refresh-type",
        "id-type",
        "refresh-audience",
        "sub-not-string",
        "exp-not-number",
        "exp-infinite",
        "iat-nan",
        "exp-fraction",
    ],
)
def test_wrong_claim(api: Api, keys: KeySet, subject: str, changes: dict[str, Any]) -> None:
    claims = {**access_claims(subject), **changes}
    assert_refused(api, sign_raw(keys, header_for(keys), payload(claims)))


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "iat", "exp", "jti", "token_type"])
def test_missing_claim(api: Api, keys: KeySet, subject: str, claim: str) -> None:
    claims = access_claims(subject)
    del claims[claim]
    assert_refused(api, sign_raw(keys, header_for(keys), payload(claims)))


@pytest.mark.parametrize(
    "kid",
    ["unknown", "../../dev/null", "' OR '1'='1", "", 5, None, ["a"]],
    ids=["unknown", "path-traversal", "sql", "empty", "number", "null", "list"],
)
def test_kid_the_service_does_not_have(api: Api, keys: KeySet, subject: str, kid: Any) -> None:
    assert_refused(api, sign_raw(keys, header_for(keys, kid=kid), payload(access_claims(subject))))


def test_missing_kid(api: Api, keys: KeySet, subject: str) -> None:
    header = header_for(keys)
    del header["kid"]
    assert_refused(api, sign_raw(keys, header, payload(access_claims(subject))))


@pytest.fixture
def listener() -> Iterator[tuple[str, socket.socket]]:
    """A loopback port that records whether anything connects to it."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        yield f"http://127.0.0.1:{server.getsockname()[1]}/jwks.json", server


@pytest.mark.parametrize("field", ["jku", "x5u", "jwk", "x5c"])
def test_header_pointing_at_an_attacker_key(
    api: Api, keys: KeySet, subject: str, listener: tuple[str, socket.socket], field: str
) -> None:
    url, server = listener
    attacker = keyset_of(key_material(name="attacker"))
    jwk = attacker.current_key.public_jwk
    if jwk is None:  # HMAC: the secret itself, as a JWK
        assert isinstance(attacker.signing_key, bytes)
        jwk = {"kty": "oct", "k": b64(attacker.signing_key)}
    values = {"jku": url, "x5u": url, "jwk": jwk, "x5c": ["MIIB"]}
    for kid in (attacker.kid, keys.kid):
        header = header_for(attacker, kid=kid, **{field: values[field]})
        assert_refused(api, sign_raw(attacker, header, payload(access_claims(subject))))
    with pytest.raises(BlockingIOError):
        server.accept()


def test_token_over_the_size_bound(api: Api, keys: KeySet, subject: str) -> None:
    claims = access_claims(subject, padding="x" * 8192)
    assert_refused(api, sign_raw(keys, header_for(keys), payload(claims)))


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"42", b"null", b"{not json", b""])
def test_payload_that_is_not_a_json_object(api: Api, keys: KeySet, body: bytes) -> None:
    assert_refused(api, sign_raw(keys, header_for(keys), body))


def test_previous_key_verifies_until_it_is_retired(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    """A token signed with the old key works while the old key is listed, and not after."""
    old, new = key_material(name="old"), key_material(name="new")
    token = make_api(settings_with(settings, **key_settings(old))).signed_in("carol")
    rotated = settings_with(settings, **key_settings(new), jwt_previous_keys=old)
    assert make_api(rotated).get("/users/me", token=token).status == 200
    assert_refused(make_api(settings_with(settings, **key_settings(new))), token)
