"""Outside software against each framework's live server, configured as its documentation says.

- OAuth2 clients at the token endpoint: Authlib and requests-oauthlib log in with the password
  grant, call the API with their bearer token, refresh with their own code (when asked, and on
  their own when the access token is about to expire), keep a rotated refresh token, and see
  every refusal as an OAuth2 `invalid_grant` error, never as a token.
- Token verifiers of another service, against the JWK Set: the rendered README's own code, and
  independently joserfc (every key-pair family) and PyJWT (all but Ed25519, which PyJWT does not
  know): access tokens pass; refresh tokens, and access tokens with a wrong `iss`, `aud` or `exp`
  or no `jti`, are refused.

Expired tokens come from the real issuer: the live server's development key ring is on disk, so
a real token's claims are signed again with the server's own key, moved hours into the past.
"""

from __future__ import annotations

import functools
import json
import re
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import jwt
import pytest
import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
from joserfc import jwk as jose_jwk
from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import KeySet
from oauthlib.oauth2 import LegacyApplicationClient
from oauthlib.oauth2.rfc6749.errors import InvalidGrantError
from requests_oauthlib import OAuth2Session as OAuthlibSession
from servers import LiveServer, StartLiveServer
from variants import variants

PASSWORD = "correct horse battery"
TIMEOUT = 10
#: The defaults of JWT_ISSUER and JWT_AUDIENCE for the default package name; the live servers
#: keep them, and a verifier in another service is configured with them.
ISSUER = "jwt-auth-service"
AUDIENCE = "jwt-auth-service-api"
REFRESH_AUDIENCE = f"{ISSUER}/refresh"
#: The service's clock-skew leeway (JWT_LEEWAY_SECONDS), which verifiers allow too.
LEEWAY = 30
#: The client id the OAuth2 clients present; the service has no client registry.
CLIENT_ID = "interop-client"

#: The OAuth2 clients: both refresh strategies (EdDSA: any algorithm would do).
CLIENT_VARIANTS = variants(("EdDSA",), ("rotating", "stateless"))
ROTATING_VARIANTS = variants(("EdDSA",))
#: Every key-pair family, the signature names of Ed25519 keys both.
KEY_PAIR_FAMILIES = ("RS256", "PS256", "ES256", "EdDSA", "Ed25519")
KEY_PAIR_VARIANTS = variants(KEY_PAIR_FAMILIES)
#: PyJWT 2.15 has no "Ed25519" (RFC 9864's name); the README shows joserfc for it.
PYJWT_VARIANTS = variants(tuple(a for a in KEY_PAIR_FAMILIES if a != "Ed25519"))

README_SECTION = "## Verifying tokens in other services"
README_JWKS_URL = "https://auth.example.com/.well-known/jwks.json"
KeyType = Literal["RSA", "EC", "OKP"]
KEY_TYPES: dict[str, KeyType] = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


# --- the live service, seen from outside ---------------------------------------------------


def register(server: LiveServer) -> tuple[str, str]:
    """Register a fresh user; return its id and username."""
    username = f"interop-{uuid.uuid4().hex[:12]}"
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
        response = http.post("/auth/register", json={"username": username, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return response.json()["id"], username


def new_login(server: LiveServer) -> tuple[str, dict[str, Any]]:
    """Register a fresh user and log in with plain HTTP; return its id and the token response."""
    user_id, username = register(server)
    form = {"grant_type": "password", "username": username, "password": PASSWORD}
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
        response = http.post("/auth/login", data=form)
    assert response.status_code == 200, response.text
    return user_id, response.json()


def users_me(server: LiveServer, access_token: str) -> httpx.Response:
    """`GET /users/me` with a bearer token, outside any OAuth2 client."""
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
        return http.get("/users/me", headers={"Authorization": f"Bearer {access_token}"})


def jwks_url(server: LiveServer) -> str:
    return f"{server.url}/.well-known/jwks.json"


@functools.cache
def ring_key(ring: Path, kid: str, key_type: KeyType) -> jose_jwk.Key:
    """A private key of a key ring, as joserfc signs with it; parsed once (an RSA key's checks
    take half a second)."""
    return jose_jwk.import_key((ring / f"{kid}.key").read_text(), key_type)


def resign(server: LiveServer, token: str, typ: str | None = None, **changes: Any) -> str:
    """`token` with its claims changed (None removes one), and its `typ` if given, signed again
    with the live server's own signing key, read from its development key ring."""
    ring = server.state / "keys"
    header = jwt.get_unverified_header(token)
    assert header["kid"] == json.loads((ring / "keyring.json").read_text())["current"]
    key = ring_key(ring, header["kid"], KEY_TYPES[header["alg"][:2]])
    claims = {**jwt.decode(token, options={"verify_signature": False}), **changes}
    claims = {name: value for name, value in claims.items() if value is not None}
    header = {**header, "typ": typ or header["typ"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc: "EdDSA" is deprecated
        return jose_jwt.encode(header, claims, key, algorithms=[header["alg"]])


def expired(server: LiveServer, token: str) -> str:
    """`token` as the server would have issued it hours ago: long expired, beyond any leeway."""
    now = int(time.time())
    return resign(server, token, iat=now - 3 * 3600, exp=now - 2 * 3600)


# --- OAuth2 clients ----------------------------------------------------------------------


class AuthlibClient:
    """Authlib's requests session as a public client (RFC 6749 section 2.1): `client_id` in the
    body, no secret (`token_endpoint_auth_method="none"`; without a client id Authlib would post
    the text `client_id=None`). It refreshes at `/auth/refresh` on its own when the access
    token is about to expire, and reports the new token to `update_token`."""

    name = "authlib"
    refused: type[Exception] = OAuthError

    def __init__(self, server: LiveServer) -> None:
        self.url = server.url
        self.updates: list[dict[str, Any]] = []
        self.session = AuthlibSession(
            client_id=CLIENT_ID,
            token_endpoint_auth_method="none",
            token_endpoint=f"{server.url}/auth/refresh",
            update_token=self._updated,
            default_timeout=TIMEOUT,
        )

    def _updated(self, token: dict[str, Any], refresh_token: str | None = None, **_: Any) -> None:
        self.updates.append(dict(token))

    @property
    def token(self) -> dict[str, Any] | None:
        token: dict[str, Any] | None = self.session.token
        return token

    def fetch_token(self, username: str, password: str) -> dict[str, Any]:
        token: dict[str, Any] = self.session.fetch_token(
            f"{self.url}/auth/login", username=username, password=password, grant_type="password"
        )
        return token

    def refresh_token(self, path: str, refresh_token: str | None = None) -> dict[str, Any]:
        token: dict[str, Any] = self.session.refresh_token(
            f"{self.url}{path}", refresh_token=refresh_token
        )
        return token

    def get(self, path: str) -> requests.Response:
        return self.session.get(f"{self.url}{path}")

    def expire_locally(self) -> None:
        """Make the client believe its access token has expired (the server still takes it)."""
        self.session.token["expires_at"] = int(time.time()) - 1

    def close(self) -> None:
        self.session.close()


class RequestsOAuthlibClient:
    """requests-oauthlib with oauthlib's `LegacyApplicationClient` (the password grant), with
    its defaults: it sends the client id as HTTP Basic credentials with an empty secret at
    login, and no client authentication when refreshing (`include_client_id=True` would put it
    in the body instead; the service ignores either). It refreshes at `/auth/refresh` on its own
    when the access token has expired, and reports the new token to `token_updater`; that
    request's body also carries `allow_redirects=True` (requests-oauthlib passes the `get`'s
    keyword arguments on as parameters), which the token endpoint ignores as RFC 6749 section
    3.2 says it must."""

    name = "requests-oauthlib"
    refused: type[Exception] = InvalidGrantError

    def __init__(self, server: LiveServer) -> None:
        self.url = server.url
        self.updates: list[dict[str, Any]] = []
        self.session = OAuthlibSession(
            client=LegacyApplicationClient(client_id=CLIENT_ID),
            auto_refresh_url=f"{server.url}/auth/refresh",
            token_updater=self.updates.append,
        )

    @property
    def token(self) -> dict[str, Any] | None:
        token: dict[str, Any] | None = self.session.token
        return token

    def fetch_token(self, username: str, password: str) -> dict[str, Any]:
        return self.session.fetch_token(
            f"{self.url}/auth/login", username=username, password=password, timeout=TIMEOUT
        )

    def refresh_token(self, path: str, refresh_token: str | None = None) -> dict[str, Any]:
        return self.session.refresh_token(
            f"{self.url}{path}", refresh_token=refresh_token, timeout=TIMEOUT
        )

    def get(self, path: str) -> requests.Response:
        return self.session.get(f"{self.url}{path}", timeout=TIMEOUT)

    def expire_locally(self) -> None:
        """Make the client believe its access token has expired (the server still takes it)."""
        self.session.token = {**self.session.token, "expires_at": time.time() - 1}

    def close(self) -> None:
        self.session.close()


OAuthClient = AuthlibClient | RequestsOAuthlibClient


@pytest.fixture
def server(answers: dict[str, str], live_server: StartLiveServer) -> LiveServer:
    """The live server of the variant the test is parametrized with (`answers`)."""
    return live_server(**answers)


@pytest.fixture(params=[AuthlibClient, RequestsOAuthlibClient], ids=lambda c: c.name)
def oauth(
    request: pytest.FixtureRequest, server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OAuthClient]:
    """An OAuth2 client library's session for the live server."""
    # oauthlib refuses plain HTTP unless told otherwise; the server is on the loopback.
    assert server.url.startswith("http://127.0.0.1:")
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    client = request.param(server)
    yield client
    client.close()


def login_with(oauth: OAuthClient, server: LiveServer) -> tuple[str, dict[str, Any]]:
    """Register a fresh user with plain HTTP, then log in through the OAuth2 client."""
    user_id, username = register(server)
    return user_id, dict(oauth.fetch_token(username, PASSWORD))


def assert_invalid_grant(raised: pytest.ExceptionInfo[Exception], says: str) -> None:
    """The client raised RFC 6749's `invalid_grant`, with the service's description."""
    error = raised.value
    assert isinstance(error, OAuthError | InvalidGrantError), error
    assert error.error == "invalid_grant"
    assert says in error.description


@pytest.mark.parametrize("answers", CLIENT_VARIANTS)
def test_client_logs_in_and_calls_the_api_with_its_bearer_token(
    server: LiveServer, oauth: OAuthClient
) -> None:
    user_id, username = register(server)
    token = oauth.fetch_token(username, PASSWORD)
    assert token["token_type"].lower() == "bearer"
    assert token["expires_in"] == 15 * 60
    assert token["refresh_token"]
    assert oauth.token is not None
    assert oauth.token["access_token"] == token["access_token"]
    me = oauth.get("/users/me")
    assert me.status_code == 200, me.text
    assert me.json() == {"id": user_id, "username": username, "email": None}


@pytest.mark.parametrize("answers", CLIENT_VARIANTS)
def test_client_refreshes_at_both_endpoints_and_keeps_the_rotated_token(
    server: LiveServer, oauth: OAuthClient
) -> None:
    """Refresh at `/auth/refresh`, then at `/auth/login` (the token endpoint) with whatever
    refresh token the client kept: with rotation, a client that kept the old one would replay
    it and lose the login, so the second refresh and the call after it prove it kept the new."""
    user_id, tokens = login_with(oauth, server)
    seen = [tokens["refresh_token"]]
    for path in ("/auth/refresh", "/auth/login"):
        refreshed = oauth.refresh_token(path)
        assert refreshed["access_token"] != tokens["access_token"]
        assert oauth.token is not None
        assert oauth.token["access_token"] == refreshed["access_token"]
        assert oauth.token["refresh_token"] == refreshed["refresh_token"]
        seen.append(refreshed["refresh_token"])
    if server.strategy == "rotating":
        assert len(set(seen)) == 3, "each refresh hands out a new refresh token"
    else:
        assert set(seen) == {tokens["refresh_token"]}, "stateless keeps the login's token"
    me = oauth.get("/users/me")
    assert me.status_code == 200, me.text
    assert me.json()["id"] == user_id
    # Stateless: the login's refresh token still works. Rotating: see the replay test.
    if server.strategy == "stateless":
        assert oauth.refresh_token("/auth/refresh", refresh_token=tokens["refresh_token"])


@pytest.mark.parametrize("answers", CLIENT_VARIANTS)
def test_client_refreshes_on_its_own_when_the_access_token_expires(
    server: LiveServer, oauth: OAuthClient
) -> None:
    user_id, tokens = login_with(oauth, server)
    oauth.expire_locally()
    updates = len(oauth.updates)
    me = oauth.get("/users/me")
    assert me.status_code == 200, me.text
    assert me.json()["id"] == user_id
    assert len(oauth.updates) == updates + 1, "the client refreshed and reported the new token"
    [new] = oauth.updates[updates:]
    assert oauth.token is not None
    assert new["access_token"] == oauth.token["access_token"] != tokens["access_token"]
    rotated = oauth.token["refresh_token"] != tokens["refresh_token"]
    assert rotated == (server.strategy == "rotating")


@pytest.mark.parametrize("answers", CLIENT_VARIANTS)
def test_client_sees_wrong_credentials_as_invalid_grant(
    server: LiveServer, oauth: OAuthClient
) -> None:
    _, username = register(server)
    for name, password in ((username, "wrong password"), (f"{username}-nobody", PASSWORD)):
        with pytest.raises(oauth.refused) as raised:
            oauth.fetch_token(name, password)
        assert_invalid_grant(raised, "Incorrect username or password")
    assert not oauth.token, "no token was made of the error body"


@pytest.mark.parametrize("answers", ROTATING_VARIANTS)
def test_client_sees_a_replayed_refresh_token_as_invalid_grant(
    server: LiveServer, oauth: OAuthClient
) -> None:
    _, tokens = login_with(oauth, server)
    oauth.refresh_token("/auth/refresh")
    assert oauth.token is not None
    current = dict(oauth.token)
    with pytest.raises(oauth.refused) as raised:
        oauth.refresh_token("/auth/refresh", refresh_token=tokens["refresh_token"])
    assert_invalid_grant(raised, "already used")
    # The replay revoked the whole login: the client's current tokens are refused too.
    with pytest.raises(oauth.refused) as raised:
        oauth.refresh_token("/auth/login", refresh_token=current["refresh_token"])
    assert_invalid_grant(raised, "revoked")
    assert users_me(server, current["access_token"]).status_code == 401


@pytest.mark.parametrize("answers", CLIENT_VARIANTS)
def test_client_sees_an_expired_refresh_token_as_invalid_grant(
    server: LiveServer, oauth: OAuthClient
) -> None:
    _, tokens = login_with(oauth, server)
    stale = expired(server, tokens["refresh_token"])
    for path in ("/auth/refresh", "/auth/login"):
        with pytest.raises(oauth.refused) as raised:
            oauth.refresh_token(path, refresh_token=stale)
        assert_invalid_grant(raised, "expired")
    assert oauth.token is not None
    assert oauth.token["refresh_token"] == tokens["refresh_token"], "the client kept its token"


# --- verifiers in another service --------------------------------------------------------

Verify = Callable[[str], dict[str, Any]]


def readme_verifier(server: LiveServer) -> tuple[Verify, tuple[type[Exception], ...]]:
    """The `verify` function of the rendered README's Python example, pointed at the live
    server's JWK Set, and the exceptions its library raises."""
    readme = (server.project.path / "README.md").read_text()
    section = readme.split(f"\n{README_SECTION}\n", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert code.count(README_JWKS_URL) == 1
    uses_joserfc = "from joserfc" in code
    assert uses_joserfc == (server.algorithm == "Ed25519"), "PyJWT for all but Ed25519"
    assert ("PyJWKClient" in code) != uses_joserfc
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    compiled = compile(code.replace(README_JWKS_URL, jwks_url(server)), "README.md", "exec")
    exec(compiled, namespace)  # noqa: S102 - the rendered README's own example
    refused = (JoseError, ValueError) if uses_joserfc else (jwt.PyJWTError,)
    return namespace["verify"], refused


def joserfc_verifier(server: LiveServer, audience: str = AUDIENCE) -> Verify:
    """Another service with joserfc: the algorithm pinned; `iss`, `aud`, `exp` checked; the
    header's `typ` deliberately not, to show that the audience alone refuses refresh tokens."""
    with httpx.Client(timeout=TIMEOUT) as http:
        keys = KeySet.import_key_set(http.get(jwks_url(server)).raise_for_status().json())
    registry = jose_jwt.JWTClaimsRegistry(
        leeway=LEEWAY,
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": audience},
        sub={"essential": True},
        iat={"essential": True},
        exp={"essential": True},
        jti={"essential": True},
    )

    def verify(token: str) -> dict[str, Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)  # joserfc: "EdDSA" is deprecated
            verified = jose_jwt.decode(token, keys, algorithms=[server.algorithm])
        registry.validate(verified.claims)
        return verified.claims

    return verify


def pyjwt_verifier(server: LiveServer, audience: str = AUDIENCE) -> Verify:
    """Another service with PyJWT's `PyJWKClient`, configured like the joserfc one."""
    keys = jwt.PyJWKClient(jwks_url(server), timeout=TIMEOUT)

    def verify(token: str) -> dict[str, Any]:
        return jwt.decode(
            token,
            keys.get_signing_key_from_jwt(token),
            algorithms=[server.algorithm],
            issuer=ISSUER,
            audience=audience,
            leeway=LEEWAY,
            options={"require": ["iss", "aud", "sub", "iat", "exp", "jti"]},
        )

    return verify


def accepted_of(
    verify: Verify, refused: tuple[type[Exception], ...], tokens: dict[str, str]
) -> list[str]:
    """The names of the `tokens` that `verify` accepted; any exception but `refused` propagates."""
    accepted = []
    for name, token in tokens.items():
        try:
            verify(token)
        except refused:
            continue
        accepted.append(name)
    return accepted


def assert_verifies_access_tokens_only(
    verify: Verify, refused: tuple[type[Exception], ...], server: LiveServer
) -> None:
    """`verify` takes the service's access tokens, and the same claims signed again with its
    key; it refuses the refresh token (even typed as an access token) and access tokens with
    any checked claim wrong or missing."""
    user_id, tokens = new_login(server)
    access, refresh = tokens["access_token"], tokens["refresh_token"]
    claims = verify(access)
    assert claims["sub"] == user_id
    assert (claims["iss"], claims["aud"]) == (ISSUER, AUDIENCE)
    # The control: a copy signed with the server's key passes, so the refusals below are for
    # the claims, not the signature.
    copy = resign(server, access, jti=uuid.uuid4().hex)
    assert verify(copy)["sub"] == user_id
    stale = expired(server, access)
    refused_by_the_server = users_me(server, stale)
    assert refused_by_the_server.status_code == 401
    assert refused_by_the_server.json()["code"] == "token_expired", "signed as the server does"
    forged = access[:-8] + ("AAAAAAAA" if access[-8:] != "AAAAAAAA" else "BBBBBBBB")
    wrong = {
        "the refresh token": refresh,
        "the refresh token typed at+jwt": resign(server, refresh, typ="at+jwt"),
        "an expired access token": stale,
        "another issuer": resign(server, access, iss="https://auth.other.example"),
        "another audience": resign(server, access, aud="another-api"),
        "the refresh audience": resign(server, access, aud=REFRESH_AUDIENCE),
        "no jti": resign(server, access, jti=None),
        "a forged signature": forged,
    }
    accepted = accepted_of(verify, refused, wrong)
    assert not accepted, f"the verifier accepted {', '.join(accepted)}"


@pytest.mark.parametrize("answers", KEY_PAIR_VARIANTS)
def test_the_readme_verifier_takes_access_tokens_only(server: LiveServer) -> None:
    verify, refused = readme_verifier(server)
    assert_verifies_access_tokens_only(verify, refused, server)


@pytest.mark.parametrize("answers", KEY_PAIR_VARIANTS)
def test_joserfc_takes_access_tokens_only(server: LiveServer) -> None:
    assert_verifies_access_tokens_only(joserfc_verifier(server), (JoseError,), server)


@pytest.mark.parametrize("answers", PYJWT_VARIANTS)
def test_pyjwt_takes_access_tokens_only(server: LiveServer) -> None:
    assert_verifies_access_tokens_only(pyjwt_verifier(server), (jwt.PyJWTError,), server)


@pytest.mark.parametrize("answers", KEY_PAIR_VARIANTS)
def test_a_verifier_expecting_the_issuer_as_audience_refuses_refresh_tokens(
    server: LiveServer,
) -> None:
    """A common misconfiguration: `aud` pinned to the issuer's name. The refresh token's
    signature is good (the JWK Set verifies it), but its audience is `<issuer>/refresh`."""
    _, tokens = new_login(server)
    refresh = tokens["refresh_token"]
    with httpx.Client(timeout=TIMEOUT) as http:
        keys = KeySet.import_key_set(http.get(jwks_url(server)).json())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc: "EdDSA" is deprecated
        signed = jose_jwt.decode(refresh, keys, algorithms=[server.algorithm])
    assert signed.claims["aud"] == REFRESH_AUDIENCE
    verifiers: list[tuple[Verify, tuple[type[Exception], ...]]] = [
        (joserfc_verifier(server, audience=ISSUER), (JoseError,))
    ]
    if server.algorithm != "Ed25519":
        verifiers.append((pyjwt_verifier(server, audience=ISSUER), (jwt.PyJWTError,)))
    as_access = resign(server, refresh, typ="at+jwt")
    # The control: with the issuer as its audience, the same token would pass.
    as_issuers = resign(server, refresh, typ="at+jwt", aud=ISSUER)
    for verify, refused in verifiers:
        accepted = accepted_of(verify, refused, {"refresh": refresh, "as access": as_access})
        assert not accepted, f"the verifier accepted {', '.join(accepted)}"
        assert verify(as_issuers)["sub"] == signed.claims["sub"]
