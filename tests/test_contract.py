"""The HTTP contract of DESIGN.md, run over the network against each framework's real server.

One suite for both frameworks: a difference in paths, bodies, status codes or headers fails here.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator

import httpx
import pytest
from conftest import CHEAP_HASHING, FAMILY_REPRESENTATIVES, PYTHON, STRATEGIES, variants
from joserfc import jwt as jose_jwt
from joserfc.errors import BadSignatureError, SecurityWarning
from joserfc.jwk import KeySet
from liveserver import running_server

pytestmark = pytest.mark.matrix

PASSWORD = "correct horse battery"
CHALLENGE = "Bearer"


class LiveClient(httpx.Client):
    """An HTTP client for one live server, knowing its algorithm and refresh strategy."""

    def __init__(self, algorithm: str, strategy: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.algorithm = algorithm
        self.strategy = strategy


@pytest.fixture(scope="module", params=variants(FAMILY_REPRESENTATIVES, STRATEGIES))
def client(request, render, tmp_path_factory) -> Iterator[LiveClient]:
    """A client for the variant's production server (uvicorn or gunicorn) on a loopback port."""
    project = render(**request.param)
    state = tmp_path_factory.mktemp("server-state")
    with (
        running_server(
            project.path,
            project.framework,
            project.package,
            PYTHON,
            env={
                "PYTHONPATH": str(project.path / "src"),
                "DATABASE_URL": f"sqlite:///{state / 'contract.db'}",
                "JWT_KEYS_DIR": str(state / "keys"),
                **CHEAP_HASHING,
            },
        ) as url,
        LiveClient(
            request.param["jwt_algorithm"],
            request.param["refresh_strategy"],
            base_url=url,
            timeout=10,
        ) as client,
    ):
        yield client


def new_user(client: LiveClient) -> tuple[str, str]:
    """Register a fresh user; return its id and username."""
    username = f"user-{uuid.uuid4().hex[:12]}"
    response = client.post("/auth/register", json={"username": username, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return response.json()["id"], username


def login(client: LiveClient, username: str) -> str:
    response = client.post("/auth/login", data={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"detail", "code"}
    assert body["code"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]


def test_health(client: LiveClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_register(client: LiveClient) -> None:
    username = f"Contract-{uuid.uuid4().hex[:8]}"
    response = client.post("/auth/register", json={"username": username, "password": PASSWORD})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "username"}
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


def test_login_form_and_json(client: LiveClient) -> None:
    _, username = new_user(client)
    form = client.post("/auth/login", data={"username": username, "password": PASSWORD})
    as_json = client.post("/auth/login", json={"username": username, "password": PASSWORD})
    for response in (form, as_json):
        assert response.status_code == 200
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
    credentials = {"username": username, "password": PASSWORD, wrong: "wrong-" + wrong}
    response = client.post("/auth/login", data=credentials)
    assert_error(response, 401, "invalid_credentials")
    assert response.headers["WWW-Authenticate"] == CHALLENGE


def test_users_me(client: LiveClient) -> None:
    user_id, username = new_user(client)
    token = login(client, username)
    response = client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {"id": user_id, "username": username}


def test_refresh(client: LiveClient) -> None:
    _, username = new_user(client)
    tokens = client.post("/auth/login", data={"username": username, "password": PASSWORD}).json()
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
        assert_error(again, 401, "refresh_token_reused")
    else:
        assert again.status_code == 200


@pytest.mark.parametrize("token", ["not-a-token", "a.b.c"])
def test_refresh_with_a_refused_token(client: LiveClient, token: str) -> None:
    response = client.post("/auth/refresh", json={"refresh_token": token})
    if client.strategy == "none":
        assert_error(response, 404, "not_found")
        return
    assert_error(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def test_logout(client: LiveClient) -> None:
    _, username = new_user(client)
    tokens = client.post("/auth/login", data={"username": username, "password": PASSWORD}).json()
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    body = {"refresh_token": tokens["refresh_token"]} if "refresh_token" in tokens else None
    response = client.post("/auth/logout", headers=auth, json=body)
    assert response.status_code == 204
    assert response.content == b""
    assert_error(client.get("/users/me", headers=auth), 401, "invalid_token")
    if body is not None:
        # Logging out ends the whole login: its refresh token is refused too.
        assert_error(client.post("/auth/refresh", json=body), 401, "invalid_token")
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


def test_users_me_with_tampered_token(client: LiveClient) -> None:
    _, username = new_user(client)
    header, payload, signature = login(client, username).split(".")
    tampered = f"{header}.{payload}x.{signature}"
    response = client.get("/users/me", headers={"Authorization": f"Bearer {tampered}"})
    assert_error(response, 401, "invalid_token")


def test_oversized_token_is_a_401_not_a_server_error(client: LiveClient) -> None:
    response = client.get("/users/me", headers={"Authorization": "Bearer " + "a" * 8200})
    assert_error(response, 401, "invalid_token")


def test_jwks(client: LiveClient) -> None:
    response = client.get("/.well-known/jwks.json")
    if client.algorithm.startswith("HS"):
        assert_error(response, 404, "not_found")
        return
    assert response.status_code == 200
    [jwk] = response.json()["keys"]
    assert jwk["alg"] == client.algorithm
    assert jwk["use"] == "sig"
    assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(jwk)


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
    assert verified.claims["token_type"] == "access"


def test_unknown_path_and_wrong_method(client: LiveClient) -> None:
    assert_error(client.get("/nope"), 404, "not_found")
    response = client.get("/auth/login")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]
