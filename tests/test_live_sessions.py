"""Refresh and logout against real servers, for each framework and strategy, on SQLite and
PostgreSQL: the full flow, the replay attack, and 20 concurrent refreshes with one token."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from liveserver import running_server
from projects import PYTHON, Render
from servers import TEST_SERVER_SETTINGS
from variants import FRAMEWORKS, STRATEGIES

PASSWORD = "correct horse battery"


@pytest.fixture(
    params=[(f, s) for f in FRAMEWORKS for s in STRATEGIES], ids=lambda p: f"{p[0]}-EdDSA-{p[1]}"
)
def server(
    request: pytest.FixtureRequest, render: Render, tmp_path: Path, database_url: str
) -> Iterator[tuple[str, str]]:
    """A live server (EdDSA) with one strategy; yields (base URL, strategy)."""
    framework, strategy = request.param
    project = render(framework=framework, jwt_algorithm="EdDSA", refresh_strategy=strategy)
    env = {
        "PYTHONPATH": str(project.path / "src"),
        "DATABASE_URL": database_url,
        "JWT_KEYS_DIR": str(tmp_path / "keys"),
        **TEST_SERVER_SETTINGS,
    }
    with running_server(project.path, framework, project.package, PYTHON, env=env) as url:
        yield url, strategy


def login(client: httpx.Client) -> dict[str, Any]:
    username = f"user-{uuid.uuid4().hex[:10]}"
    credentials = {"username": username, "password": PASSWORD}
    assert client.post("/auth/register", json=credentials).status_code == 201
    response = client.post("/auth/login", data={"grant_type": "password", **credentials})
    assert response.status_code == 200
    tokens: dict[str, Any] = response.json()
    return tokens


def test_login_refresh_refresh_logout(server: tuple[str, str]) -> None:
    url, strategy = server
    with httpx.Client(base_url=url, timeout=30) as client:
        tokens = login(client)
        if strategy == "none":
            assert "refresh_token" not in tokens
            assert client.post("/auth/refresh", json={"refresh_token": "x"}).status_code == 404
            refresh_token, access = None, tokens["access_token"]
        else:
            first = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            assert first.status_code == 200, first.text
            second = client.post(
                "/auth/refresh", json={"refresh_token": first.json()["refresh_token"]}
            )
            assert second.status_code == 200, second.text
            refresh_token, access = second.json()["refresh_token"], second.json()["access_token"]
        auth = {"Authorization": f"Bearer {access}"}
        assert client.get("/users/me", headers=auth).status_code == 200
        body = {"refresh_token": refresh_token} if refresh_token else None
        assert client.post("/auth/logout", headers=auth, json=body).status_code == 204
        after = client.get("/users/me", headers=auth)
        assert after.status_code == 401
        assert after.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
        if refresh_token:
            again = client.post("/auth/refresh", json={"refresh_token": refresh_token})
            assert again.status_code == 400
            assert again.json()["error"] == "invalid_grant"


def test_replay_and_race(server: tuple[str, str]) -> None:
    url, strategy = server
    if strategy == "none":
        with httpx.Client(base_url=url, timeout=30) as client:
            assert "refresh_token" not in login(client)
        return
    with httpx.Client(base_url=url, timeout=60) as client:
        token = login(client)["refresh_token"]

    def refresh(_: int) -> int:
        with httpx.Client(base_url=url, timeout=60) as own:
            return own.post("/auth/refresh", json={"refresh_token": token}).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(refresh, range(20)))
    assert not [status for status in statuses if status >= 500], statuses
    if strategy == "rotating":
        assert statuses.count(200) == 1, statuses
        assert set(statuses) == {200, 400}
        with httpx.Client(base_url=url, timeout=30) as client:
            # The losers of the race counted as a replay, so the whole login is revoked now.
            replay = client.post("/auth/refresh", json={"refresh_token": token})
            assert replay.status_code == 400
            assert replay.json() == {
                "error": "invalid_grant",
                "error_description": "The token has been revoked.",
                "detail": "The token has been revoked.",
                "code": "invalid_token",
            }
    else:
        assert statuses == [200] * 20
