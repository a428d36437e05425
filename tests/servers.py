"""How the template's tests run a variant's live server, and the PostgreSQL server they use."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from projects import Project

POSTGRES_ADMIN_URL = os.environ.get(
    "TEMPLATE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def conninfo(url: str) -> str:
    """psycopg's form of a SQLAlchemy URL of the PostgreSQL server (its query kept)."""
    return url.replace("postgresql+psycopg://", "postgresql://")


#: For live servers in development: cheap Argon2id, as the rendered suites use (the HTTP
#: behaviour is the same; the benchmark measures the production parameters), and throttling
#: far above what a test run sends from its one address (tests/test_lifecycle.py checks the
#: throttling with the defaults), and no refresh grace period.
TEST_SERVER_SETTINGS = {
    "ARGON2_TIME_COST": "1",
    "ARGON2_MEMORY_KIB": "1024",
    "THROTTLE_CLIENT_PER_MINUTE": "1000000",
    "THROTTLE_FREE_FAILURES": "1000",
    # A replayed refresh token is a reuse at once (the contract's replay checks); the grace
    # period has its own servers in tests/test_lifecycle.py.
    "REFRESH_REUSE_GRACE_SECONDS": "0",
}


def server_env(project: Project, state: Path, **settings: str) -> dict[str, str]:
    """The environment of a variant's live server: in development, on SQLite and with its key
    ring in `state`, with `settings` over that."""
    return {
        "PYTHONPATH": str(project.path / "src"),
        "ENVIRONMENT": "development",
        "DATABASE_URL": f"sqlite:///{state / 'live.db'}",
        "JWT_KEYS_DIR": str(state / "keys"),
        **settings,
    }


@dataclass(frozen=True)
class LiveServer:
    """A variant's production server on a loopback port, and what it was rendered with."""

    url: str
    project: Project
    state: Path  # its database file and key ring
    pid: int

    @property
    def algorithm(self) -> str:
        algorithm: str = self.project.answers["jwt_algorithm"]
        return algorithm

    @property
    def strategy(self) -> str:
        strategy: str = self.project.answers["refresh_strategy"]
        return strategy


class StartLiveServer(Protocol):
    """The `live_server` fixture: `live_server(**answers)` is the variant's running server."""

    def __call__(self, **answers: Any) -> LiveServer: ...
