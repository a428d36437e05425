"""Render template variants once per session and hand out helpers to check them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from suiterunner import SuiteRunner

ROOT = Path(__file__).resolve().parent.parent
PYTHON = Path(sys.executable)
BIN = PYTHON.parent

FRAMEWORKS = ("fastapi", "flask")
ALGORITHMS = (
    *("HS256", "HS384", "HS512"),
    *("RS256", "RS384", "RS512"),
    *("PS256", "PS384", "PS512"),
    *("ES256", "ES384", "ES512"),
    "EdDSA",
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


#: For live servers in development: cheap Argon2id, as the rendered suites use. The HTTP
#: behaviour is the same; the benchmark measures the production parameters.
CHEAP_HASHING = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "1024"}

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
_SHORT = {
    "test_no_template_syntax_is_left": "no-jinja",
    "test_ruff_finds_nothing_to_change": "ruff",
    "test_rendered_suite_passes": "own suite",
    "test_rendered_suite_passes_on_postgresql": "own suite on postgresql",
    "test_dependencies_are_exactly_what_src_imports": "dependencies",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep a variant's checks on one xdist worker (`--dist loadgroup`): it renders the variant
    once, and a module-scoped live server is started once."""
    for item in items:
        match = _VARIANT.search(item.nodeid)
        if match is not None:
            item.add_marker(pytest.mark.xdist_group(match.group("variant")))


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
