"""Render template variants once per session and hand out helpers to check them."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

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

    def run(self, *command: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run a command in the project with its `src/` importable; never raises on failure."""
        env = {**os.environ, "PYTHONPATH": str(self.path / "src"), **kwargs.pop("env", {})}
        return subprocess.run(
            [str(part) for part in command],
            cwd=self.path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            **kwargs,
        )


def variant_id(answers: dict[str, Any]) -> str:
    """Name a variant by the answers that change code: `fastapi-HS256`."""
    return f"{answers['framework']}-{answers['jwt_algorithm']}"


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
        key = tuple(sorted(answers.items()))
        if key not in cache:
            cache[key] = render_into(copie_session, answers)
        return cache[key]

    return get


def variants(algorithms: tuple[str, ...] = ALGORITHMS) -> list[Any]:
    """Every framework with every algorithm given, as pytest params named by variant."""
    combos = [{"framework": f, "jwt_algorithm": a} for f in FRAMEWORKS for a in algorithms]
    return [pytest.param(combo, id=variant_id(combo)) for combo in combos]
