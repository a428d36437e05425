"""Rendered projects, and the interpreter and paths the template's tests run them with."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol

import pytest
import yaml
from pytest_copie.plugin import Copie
from suiterunner import SuiteRunner

ROOT = Path(__file__).resolve().parent.parent
PYTHON = Path(sys.executable)
BIN = PYTHON.parent


@dataclass(frozen=True)
class Project:
    """A rendered project and the answers it was rendered with."""

    path: Path
    answers: dict[str, Any]

    @property
    def package(self) -> str:
        package: str = self.answers["package_name"]
        return package

    @property
    def framework(self) -> str:
        framework: str = self.answers["framework"]
        return framework

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


class Render(Protocol):
    """The `render` fixture: `render(**answers)` renders a variant once per session."""

    def __call__(self, **answers: Any) -> Project: ...


def render_into(copie: Copie, answers: dict[str, Any]) -> Project:
    """Render with `answers` over the defaults, failing the test if copier refuses."""
    result = copie.copy(extra_answers=answers)
    assert result.exit_code == 0, result.exception
    assert result.project_dir is not None
    recorded = yaml.safe_load((result.project_dir / ".copier-answers.yml").read_text())
    return Project(result.project_dir, recorded)


def missing(needed: str) -> NoReturn:
    """Skip a test that needs what this machine lacks; on CI (`CI` set), fail: it must run
    there."""
    if os.environ.get("CI"):
        pytest.fail(f"CI needs {needed}")
    pytest.skip(f"needs {needed}")


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `condition` until it holds or `timeout` passes; return whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def assert_suite_passes(
    project: Project,
    env: dict[str, str] | None = None,
    runner: SuiteRunner | None = None,
    paths: list[str] | None = None,
) -> None:
    """Run the project's own suite (or its test files `paths`), in a fresh interpreter or in a
    fork of `runner`.

    Only the plugins the project asks for are loaded, as in its own environment (this one
    also holds pytest-copie and xdist), and the suite has a temporary directory of its own
    (with pytest's shared one every run cleans up after the runs before it).
    """
    env = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", **(env or {})}
    # Without a PostgreSQL server the project skips its tests of what only PostgreSQL does:
    # leave them out, so that a skip anywhere else still fails (the runs on PostgreSQL have
    # them).
    selected = [] if {**os.environ, **env}.get("TEST_DATABASE_URL") else ["-m", "not postgresql"]
    with tempfile.TemporaryDirectory() as basetemp:
        args = ["-q", "-p", "no:cacheprovider", "--basetemp", basetemp, *selected, *(paths or [])]
        if runner is None:
            result = project.run(PYTHON, "-m", "pytest", *args, timeout=600, env=env)
            returncode, output = result.returncode, result.stdout + result.stderr
        else:
            returncode, output = runner.run(project.path, project.environment(env), args, 600)
    assert returncode == 0, output[-7000:]
    summary = output.strip().splitlines()[-1]
    assert " passed" in summary, summary
    assert "skipped" not in summary, summary
    assert "failed" not in summary, summary
