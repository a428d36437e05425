"""The HTTP contract of DESIGN.md, run over the network against each framework's real server.

One suite for both frameworks: a difference in paths, bodies, status codes or headers fails here.
"""

from __future__ import annotations

import re
import uuid
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest
from joserfc import jwt as jose_jwt
from joserfc.errors import BadSignatureError, SecurityWarning
from joserfc.jwk import KeySet
from servers import StartLiveServer
from variants import FAMILY_REPRESENTATIVES, STRATEGIES, variants

pytestmark = pytest.mark.matrix

PASSWORD = "correct horse battery"
CHALLENGE = "Bearer"


class LiveClient(httpx.Client):
    """An HTTP client for one live server, knowing its algorithm and refresh strategy."""

    def __init__(self, algorithm: str, strategy: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.algorithm = algorithm
        self.strategy = strategy


#: Each check runs on the variants whose code it depends on: no check is lost, and none is
#: counted thirty times. By default, what only the framework decides (paths, bodies, status
#: codes, headers): each framework's default variant. Marked `depends_on("family")`: what the
#: signing algorithm changes, one algorithm per family; `depends_on("strategy")`: what the
#: refresh strategy changes. 14 servers in all.
CLIENT_VARIANTS = {
    "framework": variants(("EdDSA",)),
    "family": variants(FAMILY_REPRESENTATIVES),
    "strategy": variants(("EdDSA",), STRATEGIES),
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "client" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("depends_on")
        what = "framework" if marker is None else marker.args[0]
        metafunc.parametrize("client", CLIENT_VARIANTS[what], indirect=True)


@pytest.fixture
def client(request: pytest.FixtureRequest, live_server: StartLiveServer) -> Iterator[LiveClient]:
    """A client for the variant's production server (uvicorn or gunicorn) on a loopback port."""
    server = live_server(**request.param)
    with LiveClient(server.algorithm, server.strategy, base_url=server.url, timeout=10) as client:
        yield client


def new_user(client: LiveClient) -> tuple[str, str]:
    """Register a fresh user; return its id and username."""
    username = f"user-{uuid.uuid4().hex[:12]}"
    response = client.post("/auth/register", json={"username": username, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return response.json()["id"], username


def credentials(username: str, password: str = PASSWORD) -> dict[str, str]:
    """The OAuth2 password grant's form."""
    return {"grant_type": "password", "username": username, "password": password}


def login(client: LiveClient, username: str) -> str:
    response = client.post("/auth/login", data=credentials(username))
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"detail", "code"}
    assert body["code"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]


def assert_token_error(response: httpx.Response, error: str, code: str) -> None:
    """RFC 6749 section 5.2: 400 with `error` and `error_description`, beside our own fields."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error", "error_description", "detail", "code"}
    assert (body["error"], body["code"]) == (error, code)
    assert body["error_description"] == body["detail"]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert "WWW-Authenticate" not in response.headers


def test_health(client: LiveClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_register(client: LiveClient) -> None:
    username = f"Contract-{uuid.uuid4().hex[:8]}"
    response = client.post("/auth/register", json={"username": username, "password": PASSWORD})
    assert response.status_code == 201
    body = response.json()
    assert body == {"id": body["id"], "username": username, "email": None}
    assert body["username"] == username


def test_register_duplicate_ignoring_case(client: LiveClient) -> None:
    _, username = new_user(client)
    response = client.post(
        "/auth/register", json={"username": username.upper(), "password": PASSWORD}
    )
    assert_error(response, 409, "username_taken")


@pytest.mark.parametrize(
    "body",
    [
        {"username": "ab", "password": PASSWORD},
        {"username": "no spaces", "password": PASSWORD},
        {"username": "valid_name", "password": "short"},
        {"username": "valid_name"},
        [],
    ],
)
def test_register_validation(client: LiveClient, body: object) -> None:
    assert_error(client.post("/auth/register", json=body), 422, "validation_error")


def test_register_malformed_json(client: LiveClient) -> None:
    response = client.post(
        "/auth/register", content=b"{oops", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 422, "validation_error")


@pytest.mark.depends_on("strategy")
def test_login_form_and_json(client: LiveClient) -> None:
    _, username = new_user(client)
    form = client.post("/auth/login", data=credentials(username))
    as_json = client.post("/auth/login", json={"username": username, "password": PASSWORD})
    for response in (form, as_json):
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Pragma"] == "no-cache"
        body = response.json()
        refresh_fields = (
            set() if client.strategy == "none" else {"refresh_token", "refresh_expires_in"}
        )
        assert set(body) == {"access_token", "token_type", "expires_in", *refresh_fields}
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 15 * 60


@pytest.mark.parametrize("wrong", ["password", "username"])
def test_login_failure(client: LiveClient, wrong: str) -> None:
    _, username = new_user(client)
    form = {**credentials(username), wrong: "wrong-" + wrong}
    response = client.post("/auth/login", data=form)
    assert_token_error(response, "invalid_grant", "invalid_credentials")


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"username": "u", "password": "p"}, "invalid_request"),
        ({"grant_type": "bogus", "username": "u", "password": "p"}, "unsupported_grant_type"),
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({"grant_type": "password", "username": "u"}, "invalid_request"),
    ],
    ids=["no-grant-type", "bogus", "client-credentials", "no-password"],
)
def test_token_endpoint_refuses_malformed_requests(
    client: LiveClient, form: dict[str, str], error: str
) -> None:
    response = client.post("/auth/login", data=form)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error


def test_token_endpoint_refuses_a_repeated_parameter(client: LiveClient) -> None:
    _, username = new_user(client)
    body = f"grant_type=password&username={username}&password=x&password={quote_plus(PASSWORD)}"
    response = client.post(
        "/auth/login",
        content=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_token_error(response, "invalid_request", "validation_error")


@pytest.mark.depends_on("family")
def test_users_me(client: LiveClient) -> None:
    user_id, username = new_user(client)
    token = login(client, username)
    response = client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {"id": user_id, "username": username, "email": None}
    assert response.headers["Cache-Control"] == "no-store"


def test_two_authorization_headers_are_refused(client: LiveClient) -> None:
    """Both servers see both headers (uvicorn lists them, gunicorn joins them) and refuse."""
    _, username = new_user(client)
    token = login(client, username)
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", "Bearer x.y.z")]
    response = client.get("/users/me", headers=headers)
    assert_error(response, 400, "invalid_request")
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_request"')


@pytest.mark.depends_on("strategy")
def test_refresh(client: LiveClient) -> None:
    _, username = new_user(client)
    tokens = client.post("/auth/login", data=credentials(username)).json()
    if client.strategy == "none":
        assert "refresh_token" not in tokens
        assert_error(client.post("/auth/refresh", json={"refresh_token": "x"}), 404, "not_found")
        return
    response = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    # Rotating hands out a new refresh token; stateless keeps the one the login gave.
    rotated = body["refresh_token"] != tokens["refresh_token"]
    assert rotated == (client.strategy == "rotating")
    assert 0 < body["refresh_expires_in"] <= tokens["refresh_expires_in"]
    # The new access token works; a rotating strategy refuses the used refresh token.
    me = client.get("/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    again = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    if client.strategy == "rotating":
        assert_token_error(again, "invalid_grant", "refresh_token_reused")
    else:
        assert again.status_code == 200


@pytest.mark.depends_on("strategy")
def test_refresh_as_an_rfc_6749_form(client: LiveClient) -> None:
    _, username = new_user(client)
    tokens = client.post("/auth/login", data=credentials(username)).json()
    form = {"grant_type": "refresh_token", "refresh_token": tokens.get("refresh_token", "x")}
    if client.strategy == "none":
        assert_error(client.post("/auth/refresh", data=form), 404, "not_found")
        at_login = client.post("/auth/login", data=form)
        assert_token_error(at_login, "unsupported_grant_type", "unsupported_grant_type")
        return
    for path in ("/auth/refresh", "/auth/login"):
        response = client.post(path, data=form)
        assert response.status_code == 200, response.text
        assert response.headers["Cache-Control"] == "no-store"
        form["refresh_token"] = response.json()["refresh_token"]


@pytest.mark.parametrize("token", ["not-a-token", "a.b.c"])
@pytest.mark.depends_on("strategy")
def test_refresh_with_a_refused_token(client: LiveClient, token: str) -> None:
    response = client.post("/auth/refresh", json={"refresh_token": token})
    if client.strategy == "none":
        assert_error(response, 404, "not_found")
        return
    assert_token_error(response, "invalid_grant", "invalid_token")


@pytest.mark.depends_on("strategy")
def test_logout(client: LiveClient) -> None:
    _, username = new_user(client)
    tokens = client.post("/auth/login", data=credentials(username)).json()
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    body = {"refresh_token": tokens["refresh_token"]} if "refresh_token" in tokens else None
    response = client.post("/auth/logout", headers=auth, json=body)
    assert response.status_code == 204
    assert response.content == b""
    assert_error(client.get("/users/me", headers=auth), 401, "invalid_token")
    if body is not None:
        # Logging out ends the whole login: its refresh token is refused too.
        refused = client.post("/auth/refresh", json=body)
        assert_token_error(refused, "invalid_grant", "invalid_token")
    unauthenticated = client.post("/auth/logout")
    assert_error(unauthenticated, 401, "not_authenticated")
    assert unauthenticated.headers["WWW-Authenticate"] == CHALLENGE


def test_users_me_without_token(client: LiveClient) -> None:
    response = client.get("/users/me")
    assert_error(response, 401, "not_authenticated")
    assert response.headers["WWW-Authenticate"] == CHALLENGE


@pytest.mark.parametrize("token", ["not-a-token", "a.b.c"])
def test_users_me_with_refused_token(client: LiveClient, token: str) -> None:
    response = client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    assert_error(response, 401, "invalid_token")
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer error="invalid_token", error_description="')


@pytest.mark.depends_on("family")
def test_users_me_with_tampered_token(client: LiveClient) -> None:
    _, username = new_user(client)
    header, payload, signature = login(client, username).split(".")
    tampered = f"{header}.{payload}x.{signature}"
    response = client.get("/users/me", headers={"Authorization": f"Bearer {tampered}"})
    assert_error(response, 401, "invalid_token")


def test_oversized_token_is_a_401_not_a_server_error(client: LiveClient) -> None:
    response = client.get("/users/me", headers={"Authorization": "Bearer " + "a" * 8200})
    assert_error(response, 401, "invalid_token")


@pytest.mark.depends_on("family")
def test_jwks(client: LiveClient) -> None:
    response = client.get("/.well-known/jwks.json")
    if client.algorithm.startswith("HS"):
        assert_error(response, 404, "not_found")
        return
    assert response.status_code == 200
    [jwk] = response.json()["keys"]
    assert jwk["alg"] == client.algorithm
    assert jwk["use"] == "sig"
    assert "key_ops" not in jwk
    assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(jwk)


@pytest.mark.depends_on("family")
def test_token_verifies_with_an_independent_jose_library_from_the_jwks_alone(
    client: LiveClient,
) -> None:
    """Another service, using joserfc instead of PyJWT, trusts the token via the JWKS alone."""
    _, username = new_user(client)
    token = login(client, username)
    response = client.get("/.well-known/jwks.json")
    if client.algorithm.startswith("HS"):
        assert response.status_code == 404
        return
    key_set = KeySet.import_key_set(response.json())
    forged = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    with warnings.catch_warnings():
        # joserfc flags "EdDSA" as deprecated by RFC 9864 (fully-specified "Ed25519" replaces it).
        warnings.simplefilter("ignore", SecurityWarning)
        verified = jose_jwt.decode(token, key_set, algorithms=[client.algorithm])
        with pytest.raises(BadSignatureError):
            jose_jwt.decode(forged, key_set, algorithms=[client.algorithm])
    assert verified.header["kid"] == response.json()["keys"][0]["kid"]
    assert verified.header["typ"] == "at+jwt"
    assert verified.claims["token_type"] == "access"


def test_unknown_path_and_wrong_method(client: LiveClient) -> None:
    assert_error(client.get("/nope"), 404, "not_found")
    response = client.get("/auth/login")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


@pytest.mark.depends_on("family")
def test_head_answers_wherever_get_does(client: LiveClient) -> None:
    for path in ("/health", "/.well-known/jwks.json", "/users/me"):
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code, path
        assert head.content == b""
        assert head.headers["content-type"] == get.headers["content-type"]


@pytest.mark.parametrize("answers", CLIENT_VARIANTS["framework"])
def test_the_readme_api_table_lists_the_described_operations(
    live_server: StartLiveServer, answers: dict[str, str]
) -> None:
    """The rendered README's table under "The API" and the running service's /openapi.json name
    the same operations (the default variant has every route)."""
    server = live_server(**answers)
    readme = (server.project.path / "README.md").read_text()
    section = readme.split("\n## The API\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| (GET|POST|PUT|DELETE) (/\S*) \|", section, re.MULTILINE))
    document = httpx.get(f"{server.url}/openapi.json", timeout=10).raise_for_status().json()
    described = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert listed == described
