"""Rendered projects, and the interpreter and paths the template's tests run them with."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol

import pytest
import yaml
from pytest_copie.plugin import Copie

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
