"""Each variant whose Python code differs passes `mypy --strict`, as its pyproject.toml
configures it (the pydantic plugin, `src`).

Only the framework changes the code's shape: every other answer fills in a value (the default
algorithm, a lifetime, the package's name) and never a type, a branch or a file. So one render
per framework is type-checked, not the whole matrix; the second test keeps that true.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from projects import BIN, Project, Render
from variants import FRAMEWORKS, variants

pytestmark = pytest.mark.matrix

#: Every answer that is not the framework, away from its default (HS512 and `stateless`
#: make a different key set-up and session code path, but the same code).
OTHER_ANSWERS = {
    "project_name": "Orders API",
    "jwt_algorithm": "HS512",
    "refresh_strategy": "stateless",
    "access_token_minutes": 5,
    "refresh_token_days": 30,
}


@pytest.fixture(scope="session")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mypy's cache for this run (and xdist worker), outside the projects: the second variant
    reuses the analysis of the libraries and of the identical core (mypy rechecks each file
    whose text differs), about 15 s less."""
    return tmp_path_factory.mktemp("mypy-cache")


@pytest.mark.parametrize("answers", variants(("EdDSA",)))
def test_mypy_strict_passes(render: Render, mypy_cache: Path, answers: dict[str, Any]) -> None:
    """`mypy` run in the project, as the project configures it (pyproject.toml)."""
    project = render(**answers)
    checked = project.run(BIN / "mypy", "--cache-dir", mypy_cache, timeout=600)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("Success: no issues found"), checked.stdout


def code_shape(project: Project) -> dict[str, str]:
    """Each Python file of `src/` and `tests/` as its syntax tree, with each literal replaced
    by its type and the package's name by a placeholder: what a type checker sees."""
    shapes = {}
    for path in sorted([*project.path.glob("src/**/*.py"), *project.path.glob("tests/**/*.py")]):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant):
                node.value = type(node.value).__name__
            elif isinstance(node, ast.ImportFrom) and node.module:
                node.module = node.module.replace(project.package, "PACKAGE")
            elif isinstance(node, ast.alias):
                node.name = node.name.replace(project.package, "PACKAGE")
            elif isinstance(node, ast.Name):
                node.id = node.id.replace(project.package, "PACKAGE")
        relative = str(path.relative_to(project.path)).replace(project.package, "PACKAGE")
        shapes[relative] = ast.dump(tree)
    return shapes


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_only_the_framework_shapes_the_code(render: Render, framework: str) -> None:
    """Other answers change only literals and the package's name, so the render type-checked
    above stands for them all (a new `{% if %}` on another answer in Python code fails here:
    type-check that variant too)."""
    default = code_shape(render(framework=framework, jwt_algorithm="EdDSA"))
    other = code_shape(render(framework=framework, **OTHER_ANSWERS))
    assert sorted(other) == sorted(default)
    for name, shape in default.items():
        assert other[name] == shape, f"{name} differs in more than its literals"
