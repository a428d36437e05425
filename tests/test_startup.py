"""The real servers refuse to start in production without a proper secret, and say why."""

from __future__ import annotations

import shutil

import pytest
from conftest import FRAMEWORKS, PYTHON
from liveserver import run_to_exit


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JWT_SECRET": "s3cr3t-13-byt"}, "JWT_SECRET must be at least 32 bytes"),
        ({"JWT_SECRET": "change-me" * 8}, "JWT_SECRET is a placeholder"),
        ({"ACCESS_TOKEN_MINUTES": "0"}, "ACCESS_TOKEN_MINUTES: Input should be greater"),
    ],
    ids=["short-secret", "placeholder-secret", "bad-lifetime"],
)
def test_production_refuses_a_bad_setting(
    render, framework: str, env: dict[str, str], message: str
) -> None:
    project = render(framework=framework, jwt_algorithm="HS256")
    env = {"ENVIRONMENT": "production", "PYTHONPATH": str(project.path / "src"), **env}
    returncode, output = run_to_exit(project.path, framework, project.package, PYTHON, env)
    assert returncode != 0
    assert message in output
    assert "Traceback" not in output


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_production_refuses_a_missing_secret(render, tmp_path, framework: str) -> None:
    project = render(framework=framework, jwt_algorithm="HS256")
    copy = shutil.copytree(project.path, tmp_path / "project")
    (copy / ".env").unlink()
    env = {"ENVIRONMENT": "production", "PYTHONPATH": str(copy / "src")}
    returncode, output = run_to_exit(copy, framework, project.package, PYTHON, env)
    assert returncode != 0
    assert "JWT_SECRET is required in production" in output
    assert "Traceback" not in output
