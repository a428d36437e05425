"""Each variant renders clean, lints clean, and passes its own test suite."""

from __future__ import annotations

import ast
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
from frameworks import TABLE
from projects import BIN, PYTHON, ROOT, Project, Render, assert_suite_passes
from pytest_copie.plugin import Copie
from suiterunner import SuiteRunner
from variants import FRAMEWORKS, matrix, suite_variants, variant_id

# A Jinja expression or statement; Python's `}}` (nested dicts) is not one.
JINJA = re.compile(r"\{\{\s*[\w'\"(]|\{%|%\}")


def is_rendered(path: Path) -> bool:
    """False for what running a project leaves behind: bytecode and database files."""
    return "__pycache__" not in path.parts and not path.name.endswith((".db", ".db-wal", ".db-shm"))


@pytest.mark.matrix
@pytest.mark.parametrize("answers", matrix())
def test_no_template_syntax_is_left(render: Render, answers: dict[str, Any]) -> None:
    project = render(**answers)
    files = [path for path in project.path.rglob("*") if path.is_file() and is_rendered(path)]
    assert len(files) > 30
    for path in files:
        assert ".jinja" not in path.name, path
        leftover = JINJA.search(path.read_text())
        assert leftover is None, f"{leftover.group()!r} left in {path.relative_to(project.path)}"


@pytest.mark.matrix
@pytest.mark.parametrize("answers", matrix())
def test_ruff_finds_nothing_to_change(render: Render, answers: dict[str, Any]) -> None:
    project = render(**answers)
    formatted = project.run(BIN / "ruff", "format", "--check", "--no-cache", ".")
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    linted = project.run(BIN / "ruff", "check", "--no-cache", ".")
    assert linted.returncode == 0, linted.stdout + linted.stderr


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The projects' own suites: the 19 variants that cover the 84 (`suite_variants`), or with
    `--every-suite` all of them."""
    if metafunc.definition.name == "test_rendered_suite_passes":
        every = metafunc.config.getoption("every_suite")
        metafunc.parametrize("answers", matrix() if every else suite_variants())


@pytest.mark.matrix
def test_rendered_suite_passes(
    render: Render, suite_runner: SuiteRunner, answers: dict[str, Any]
) -> None:
    assert_suite_passes(render(**answers), runner=suite_runner)


#: On PostgreSQL, the default variant of one framework and the stateless one of the other:
#: the core is the same in both (checked below), and each web layer runs once on the server.
POSTGRESQL_SUITES = [
    pytest.param(answers, id=variant_id(answers) + "-pg")
    for answers in (
        {"framework": "fastapi", "jwt_algorithm": "EdDSA", "refresh_strategy": "rotating"},
        {"framework": "flask", "jwt_algorithm": "EdDSA", "refresh_strategy": "stateless"},
    )
]


@pytest.mark.parametrize("answers", POSTGRESQL_SUITES)
def test_rendered_suite_passes_on_postgresql(
    render: Render, suite_runner: SuiteRunner, postgres_url: str, answers: dict[str, str]
) -> None:
    """Each test of the project's suite gets a schema of its own on the real server."""
    project = render(**answers)
    assert_suite_passes(project, {"TEST_DATABASE_URL": postgres_url}, runner=suite_runner)


@pytest.mark.parametrize("algorithm", ["HS256", "EdDSA"])
def test_core_is_identical_in_both_frameworks(render: Render, algorithm: str) -> None:
    fastapi, flask = (render(framework=f, jwt_algorithm=algorithm) for f in FRAMEWORKS)
    fastapi_core = fastapi.path / "src" / fastapi.package / "core"
    flask_core = flask.path / "src" / flask.package / "core"
    names = sorted(path.name for path in fastapi_core.glob("*.py"))
    assert names == sorted(path.name for path in flask_core.glob("*.py"))
    for name in names:
        assert (fastapi_core / name).read_bytes() == (flask_core / name).read_bytes(), name


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_only_the_chosen_framework_is_rendered(render: Render, framework: str) -> None:
    project = render(framework=framework, jwt_algorithm="HS256")
    package = project.path / "src" / project.package
    pyproject = (project.path / "pyproject.toml").read_text()
    for row in TABLE:
        chosen = row.name == framework
        assert (package / f"{row.entry}.py").is_file() == chosen, row.entry
        assert (f'"{row.name}' in pyproject) == chosen, row.name


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_hmac_secret_stays_out_of_git_and_the_answers_file(render: Render, framework: str) -> None:
    project = render(framework=framework, jwt_algorithm="HS512")
    env = dict(
        line.split("=", 1)
        for line in (project.path / ".env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    secret = env["JWT_SECRET"]
    assert len(secret.encode()) >= 64
    answers = (project.path / ".copier-answers.yml").read_text()
    assert secret not in answers
    assert "secret" not in answers.lower()
    for path in project.path.rglob("*"):
        if path.is_file() and path.name != ".env":
            assert secret not in path.read_text(errors="replace"), path
    assert tracked_by_git(project.path, ["app.db", "signing.pem"]) == [".env.example"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_secrets_and_data_stay_out_of_images(render: Render, framework: str) -> None:
    """The project's .dockerignore keeps what git ignores for safety out of an image too."""
    project = render(framework=framework, jwt_algorithm="HS256")
    ignored = (project.path / ".dockerignore").read_text().split()
    for pattern in ("**/.env", "**/keys/", "**/*.db", "**/*.pem", "**/*.key"):
        assert pattern in ignored, pattern
    assert "!.env.example" in ignored


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_development_key_pair_is_private_and_git_ignored(
    render: Render, tmp_path: Path, framework: str
) -> None:
    project = render(framework=framework, jwt_algorithm="ES256")
    copy = shutil.copytree(project.path, tmp_path / "project")
    shutil.rmtree(copy / "keys", ignore_errors=True)
    assert "JWT_PRIVATE_KEY" not in (copy / ".env").read_text()
    shown = Project(copy, project.answers).run(PYTHON, "-m", project.package, "keys", "rotate")
    assert shown.returncode == 0, shown.stderr
    key_files = list((copy / "keys").iterdir())
    assert len(key_files) == 2
    for path in key_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tracked_by_git(copy, []) == [".env.example"]


def tracked_by_git(project: Path, extra_files: list[str]) -> list[str]:
    """Create `extra_files`, `git add -A` in a throwaway clone of the tree, list what git tracks
    among the secret-bearing files (.env*, keys, databases), then remove what was created."""
    work = Path(tempfile.mkdtemp())
    shutil.copytree(project, work / "p", ignore=shutil.ignore_patterns("__pycache__"))
    for name in extra_files:
        (work / "p" / name).write_text("")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=work / "p", check=True)
    subprocess.run([*git, "add", "-A"], cwd=work / "p", check=True)
    listed = subprocess.run(
        ["git", "ls-files"], cwd=work / "p", capture_output=True, text=True, check=True
    ).stdout.split()
    shutil.rmtree(work)
    secretive = (".env", "keys/", ".db", ".pem", ".key")
    return sorted(name for name in listed if any(part in name for part in secretive))


def test_every_project_gets_its_own_development_secret(copie: Copie) -> None:
    secrets = set()
    for _ in range(2):
        result = copie.copy(extra_answers={"jwt_algorithm": "HS256"})
        assert result.exit_code == 0, result.exception
        assert result.project_dir is not None
        secrets.add((result.project_dir / ".env").read_text())
    assert len(secrets) == 2


def test_copier_cli_renders_without_trust(tmp_path: Path) -> None:
    """`copier copy` with no --trust and no --data works: the template needs no unsafe feature."""
    result = subprocess.run(
        [BIN / "copier", "copy", "--defaults", "--quiet", str(ROOT), str(tmp_path / "project")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "project" / "src" / "jwt_auth_service" / "asgi.py").is_file()
    assert (tmp_path / "project" / ".env").is_file()


#: Import names that differ from the distribution that provides them.
DISTRIBUTION_OF = {
    "jwt": "pyjwt",
    "pydantic_settings": "pydantic-settings",
    "fastapi_offline": "fastapi-offline",
    "swagger_ui": "swagger-ui-py",
}
#: Declared but never imported, on purpose: the production servers run the app.
SERVERS = {row.server for row in TABLE}


@pytest.mark.matrix
@pytest.mark.parametrize("answers", matrix())
def test_dependencies_are_exactly_what_src_imports(render: Render, answers: dict[str, Any]) -> None:
    project = render(**answers)
    pyproject = tomllib.loads((project.path / "pyproject.toml").read_text())
    # The `postgres` extra counts: the code that needs psycopg imports it where it runs.
    requirements = [
        *pyproject["project"]["dependencies"],
        *pyproject["project"]["optional-dependencies"]["postgres"],
    ]
    declared = {
        re.split(r"[\[<>=!~ ]", requirement, maxsplit=1)[0].lower() for requirement in requirements
    }
    imported: set[str] = set()
    for path in (project.path / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {project.package, "__future__"}
    needed = {DISTRIBUTION_OF.get(name, name) for name in third_party}
    assert needed <= declared, f"imported but not declared: {sorted(needed - declared)}"
    assert declared - SERVERS <= needed, f"declared, never imported: {sorted(declared - needed)}"
