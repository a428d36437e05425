"""GET /.well-known/jwks.json: the public keys for key pairs, a JSON 404 for HMAC."""

import jwt

from ..helpers import ALGORITHM
from .api import Api

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}


def test_jwks(api: Api, keys) -> None:
    reply = api.get("/.well-known/jwks.json")
    if ALGORITHM.startswith("HS"):
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
    assert not PRIVATE_MEMBERS & set(jwk)


def test_tokens_verify_with_the_published_key(api: Api) -> None:
    token = api.signed_in()
    reply = api.get("/.well-known/jwks.json")
    if ALGORITHM.startswith("HS"):
        assert reply.status == 404
        return
    kid = jwt.get_unverified_header(token)["kid"]
    [jwk] = [key for key in reply.body["keys"] if key["kid"] == kid]
    claims = jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=[ALGORITHM], audience="test-audience")
    assert claims["token_type"] == "access"
