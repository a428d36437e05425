"""Render template variants once per session and hand out helpers to check them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from liveserver import server_process
from suiterunner import SuiteRunner
from xdist.scheduler import LoadScopeScheduling

ROOT = Path(__file__).resolve().parent.parent
PYTHON = Path(sys.executable)
BIN = PYTHON.parent

FRAMEWORKS = ("fastapi", "flask")
ALGORITHMS = (
    *("HS256", "HS384", "HS512"),
    *("RS256", "RS384", "RS512"),
    *("PS256", "PS384", "PS512"),
    *("ES256", "ES384", "ES512"),
    *("Ed25519", "EdDSA"),
)
#: One algorithm per family, for the checks that start real servers.
FAMILY_REPRESENTATIVES = ("HS256", "RS256", "PS256", "ES256", "EdDSA")
STRATEGIES = ("rotating", "stateless", "none")


@dataclass(frozen=True)
class Project:
    """A rendered project and the answers it was rendered with."""

    path: Path
    answers: dict[str, Any]

    @property
    def package(self) -> str:
        return self.answers["package_name"]

    @property
    def framework(self) -> str:
        return self.answers["framework"]

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """This process's environment with the project's `src/` importable, plus `extra`."""
        return {**os.environ, "PYTHONPATH": str(self.path / "src"), **(extra or {})}

    def run(self, *command: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run a command in the project with its `src/` importable; never raises on failure."""
        return subprocess.run(
            [str(part) for part in command],
            cwd=self.path,
            env=self.environment(kwargs.pop("env", {})),
            capture_output=True,
            text=True,
            check=False,
            **kwargs,
        )


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `condition` until it holds or `timeout` passes; return whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def variant_id(answers: dict[str, Any]) -> str:
    """Name a variant by the answers that change code: `fastapi-HS256-rotating`."""
    strategy = answers.get("refresh_strategy", "rotating")
    return f"{answers['framework']}-{answers['jwt_algorithm']}-{strategy}"


def render_into(copie, answers: dict[str, Any]) -> Project:
    """Render with `answers` over the defaults, failing the test if copier refuses."""
    result = copie.copy(extra_answers=answers)
    assert result.exit_code == 0, result.exception
    recorded = yaml.safe_load((result.project_dir / ".copier-answers.yml").read_text())
    return Project(result.project_dir, recorded)


@pytest.fixture(scope="session")
def render(copie_session):
    """Render a variant once per session (per xdist worker) and return it on every later call."""
    cache: dict[tuple, Project] = {}

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


def variants(
    algorithms: tuple[str, ...] = ALGORITHMS, strategies: tuple[str, ...] = ("rotating",)
) -> list[Any]:
    """Every framework with every algorithm and strategy given, as params named by variant."""
    combos = [
        {"framework": f, "jwt_algorithm": a, "refresh_strategy": s}
        for f in FRAMEWORKS
        for a in algorithms
        for s in strategies
    ]
    return [pytest.param(combo, id=variant_id(combo)) for combo in combos]


def matrix() -> list[Any]:
    """Every combination of the answers that change code: framework x algorithm x strategy."""
    return variants(ALGORITHMS, STRATEGIES)


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
        return self.project.answers["jwt_algorithm"]

    @property
    def strategy(self) -> str:
        return self.project.answers["refresh_strategy"]


@pytest.fixture(scope="session")
def live_server(render, tmp_path_factory) -> Iterator[Any]:
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


POSTGRES_ADMIN_URL = os.environ.get(
    "TEMPLATE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server the PostgreSQL tests use; skipped when absent, unless CI is set."""
    conninfo = POSTGRES_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        psycopg.connect(conninfo, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs PostgreSQL at {POSTGRES_ADMIN_URL}: {exc}")
        pytest.skip(f"no PostgreSQL at {POSTGRES_ADMIN_URL} (set TEMPLATE_TEST_POSTGRES): {exc}")
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_schema(postgres_url: str) -> Any:
    """A fresh schema for one test; returns the URL that selects it. Dropped afterwards."""
    conninfo = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    schema = f"tpl_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{postgres_url}?options=-csearch_path%3D{schema}"
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


# A table at the end of the run: every variant, what was checked, the result, the time spent.
_VARIANT = re.compile(
    r"(?P<variant>(fastapi|flask)-[A-Za-z0-9]+-(rotating|stateless|none))(-sqlite|-postgresql|-pg)?"
)
_CHECKS: dict[str, dict[str, list[Any]]] = {}
_WORKERS: dict[str, set[str]] = {}
_SHORT = {
    "test_no_template_syntax_is_left": "no-jinja",
    "test_ruff_finds_nothing_to_change": "ruff",
    "test_rendered_suite_passes": "own suite",
    "test_rendered_suite_passes_on_postgresql": "own suite on postgresql",
    "test_dependencies_are_exactly_what_src_imports": "dependencies",
}


#: Modules of single tests that take tens of seconds: they start first, so that no worker
#: is left finishing one alone at the end of the run.
LONG_MODULES = ("test_fresh_install.py", "test_update.py", "test_bench.py")


def variant_of(nodeid: str) -> str | None:
    """The variant a test checks (`flask-ES384-stateless`), if it checks one."""
    match = _VARIANT.search(nodeid)
    return None if match is None else match.group("variant")


@pytest.hookimpl(trylast=True)  # after pytest has ordered the items by their fixtures
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the run for xdist: the long single tests, then the variants (those with the most
    checks first), then the rest. A variant's checks stay together and in their order."""
    checks = Counter(variant_of(item.nodeid) for item in items)

    def rank(item: pytest.Item) -> tuple[int, int, str]:
        variant = variant_of(item.nodeid)
        if item.path.name in LONG_MODULES:
            return (0, 0, "")
        if variant is not None:
            return (1, -checks[variant], variant)
        return (2, 0, "")

    items.sort(key=rank)  # stable: the order within a rank stays pytest's


class VariantScheduling(LoadScopeScheduling):
    """xdist's load-scope scheduling with each variant's tests as one unit of work: a worker
    renders the variant once and starts its live server once. Any other test is a unit alone.

    (`--dist loadgroup` would do this with `xdist_group` marks, but with pytest 9.2 and
    pytest-xdist 3.8 it silently stops grouping: pytest-xdist issue 1386.)"""

    def _split_scope(self, nodeid: str) -> str:
        return variant_of(nodeid) or nodeid


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> VariantScheduling | None:
    """Schedule `-n N` runs by variant, in the order of the collection."""
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    config.option.loadscopereorder = False
    return VariantScheduling(config, log)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Record each variant's checks (on the controller too, under xdist)."""
    match = _VARIANT.search(report.nodeid)
    if match is None:
        return
    module = report.nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
    function = report.nodeid.split("::")[-1].split("[")[0]
    # Render checks by name; a suite of HTTP tests as one check, counted.
    name = _SHORT.get(function) or module.removeprefix("test_")
    check = _CHECKS.setdefault(match.group(0), {}).setdefault(name, [True, 0.0, 0])
    check[0] = check[0] and not report.failed
    check[1] += report.duration  # set-up (rendering, server start) and tear-down count too
    check[2] += report.when == "call"
    worker = getattr(getattr(report, "node", None), "gateway", None)
    if worker is not None:  # under xdist, on the controller
        _WORKERS.setdefault(match.group("variant"), set()).add(worker.id)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the variant table, slowest first."""
    if not _CHECKS:
        return
    rows = []
    for variant, checks in _CHECKS.items():
        seconds = sum(check[1] for check in checks.values())
        passed = all(check[0] for check in checks.values())
        names = ", ".join(
            f"{name} x{count}" if count > 1 else name
            for name, (_, _, count) in sorted(checks.items())
        )
        rows.append((seconds, variant, names, "pass" if passed else "FAIL"))
    write = terminalreporter.write_line
    terminalreporter.section("variants, slowest first")
    write(f"{'variant':<36} {'result':<6} {'seconds':>8}  checks")
    for seconds, variant, names, result in sorted(rows, reverse=True):
        write(f"{variant:<36} {result:<6} {seconds:>8.1f}  {names}")
    split = sorted(variant for variant, workers in _WORKERS.items() if len(workers) > 1)
    if split:  # each was rendered, and its server started, once per worker
        write(f"Variants run on more than one worker: {', '.join(split)}", yellow=True)
