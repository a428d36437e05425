"""A rendered project installs from its own pyproject.toml alone and passes its suite there.

This proves the project declares every dependency it needs; the other tests share one
environment for speed.
"""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import pytest
from projects import Render
from variants import FRAMEWORKS


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_project_installs_and_passes_in_a_fresh_environment(
    render: Render, tmp_path: Path, framework: str
) -> None:
    project = render(framework=framework, jwt_algorithm="HS256")
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    install = subprocess.run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "-q", ".[dev]"],
        cwd=project.path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    tests = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project.path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout[-5000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout.strip().splitlines()[-1]
