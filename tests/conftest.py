"""The template suite's fixtures: rendered variants, their live servers, PostgreSQL.

The answer space is in `variants.py`, rendered projects in `projects.py`, live-server settings
in `servers.py`; `variant_plugin.py` schedules the matrix and prints its table."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest
from liveserver import server_process
from projects import PYTHON, Project, Render, render_into
from pytest_copie.plugin import Copie
from servers import (
    POSTGRES_ADMIN_URL,
    TEST_SERVER_SETTINGS,
    LiveServer,
    StartLiveServer,
    conninfo,
    server_env,
)
from suiterunner import SuiteRunner
from variants import variant_id

pytest_plugins = ["variant_plugin"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--every-suite",
        action="store_true",
        help="run the own suite of all 84 variants, not only the 19 that cover them",
    )


@pytest.fixture(scope="session")
def render(copie_session: Copie) -> Render:
    """Render a variant once per session (per xdist worker) and return it on every later call."""
    cache: dict[tuple[tuple[str, Any], ...], Project] = {}

    def get(**answers: Any) -> Project:
        answers.setdefault("refresh_strategy", "rotating")
        key = tuple(sorted(answers.items()))
        if key not in cache:
            cache[key] = render_into(copie_session, answers)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def suite_runner() -> Iterator[SuiteRunner]:
    """Runs rendered suites in forks of a process with their dependencies imported."""
    runner = SuiteRunner(PYTHON)
    yield runner
    runner.close()


@pytest.fixture(scope="session")
def live_server(
    render: Render, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartLiveServer]:
    """`live_server(**answers)`: the variant's production server (uvicorn or gunicorn) on
    SQLite, started on first use and shared by every later test of that variant on this
    worker. One server runs at a time: the scheduler sends a variant's tests to one worker in
    a row, so starting the next variant's server stops the previous one."""
    stack = ExitStack()
    current: dict[str, LiveServer] = {}

    def get(**answers: Any) -> LiveServer:
        project = render(**answers)
        key = variant_id(project.answers)
        if key not in current:
            stack.close()
            current.clear()
            state = tmp_path_factory.mktemp("server-state")
            env = server_env(project, state, **TEST_SERVER_SETTINGS)
            running = stack.enter_context(
                server_process(project.path, project.framework, project.package, PYTHON, env=env)
            )
            current[key] = LiveServer(running.url, project, state, running.process.pid)
        return current[key]

    with stack:
        yield get


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server the PostgreSQL tests use; skipped when absent, unless CI is set."""
    try:
        psycopg.connect(conninfo(POSTGRES_ADMIN_URL), connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs PostgreSQL at {POSTGRES_ADMIN_URL}: {exc}")
        pytest.skip(f"no PostgreSQL at {POSTGRES_ADMIN_URL} (set TEMPLATE_TEST_POSTGRES): {exc}")
    return POSTGRES_ADMIN_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database for a test that runs on both: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    url: str = request.getfixturevalue("postgres_schema")
    return url


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A fresh schema for one test; returns the URL that selects it. Dropped afterwards."""
    schema = f"tpl_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(conninfo(postgres_url), autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{postgres_url}?options=-csearch_path%3D{schema}"
    with psycopg.connect(conninfo(postgres_url), autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
