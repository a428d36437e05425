"""The real servers refuse to start in production without proper keys, and say which variable to fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import frameworks
import pytest
from liveserver import run_to_exit
from projects import PYTHON, Project, Render
from variants import FRAMEWORKS

HMAC_CASES = [
    ({"JWT_SECRET": "s3cr3t-13-byt"}, "JWT_SECRET must be at least 32 bytes for HS256"),
    ({"JWT_SECRET": "change-me" * 8}, "JWT_SECRET is a placeholder"),
    ({"ACCESS_TOKEN_MINUTES": "0"}, "ACCESS_TOKEN_MINUTES: Input should be greater"),
    ({"ARGON2_MEMORY_KIB": "1024"}, "ARGON2_MEMORY_KIB must be at least 19456 in production"),
    (
        {"JWT_ISSUER": "https://auth.example", "JWT_AUDIENCE": "https://auth.example/refresh"},
        "JWT_AUDIENCE must not be 'https://auth.example/refresh': refresh tokens of JWT_ISSUER=",
    ),
]
KEY_PAIR_CASES = [
    ({"JWT_PRIVATE_KEY": "not a pem"}, "JWT_PRIVATE_KEY is not a PEM private key"),
    ({"JWT_PRIVATE_KEY_FILE": "/nonexistent/key.pem"}, "JWT_PRIVATE_KEY_FILE: cannot read"),
    ({"JWT_SECRET": "x" * 64}, "JWT_SECRET is for HMAC algorithms, but JWT_ALGORITHM is ES256"),
]
MISSING = {
    "HS256": "JWT_SECRET is required in production for HS256",
    "ES256": "JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE is required in production for ES256",
}


def assert_refused(project: Path, framework: str, env: dict[str, str], message: str) -> None:
    env = {"ENVIRONMENT": "production", "PYTHONPATH": str(project / "src"), **env}
    package = next(project.glob("src/*/__init__.py")).parent.name
    returncode, output = run_to_exit(project, framework, package, PYTHON, env)
    assert returncode != 0, output
    assert message in output
    assert "Traceback" not in output


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize(
    ("algorithm", "env", "message"),
    [("HS256", env, message) for env, message in HMAC_CASES]
    + [("ES256", env, message) for env, message in KEY_PAIR_CASES],
    ids=[
        "HS256-short-secret",
        "HS256-placeholder",
        "HS256-bad-lifetime",
        "HS256-weak-argon2",
        "HS256-refresh-audience",
        "ES256-not-pem",
        "ES256-unreadable-file",
        "ES256-secret-for-key-pair",
    ],
)
def test_production_refuses_a_bad_setting(
    render: Render, framework: str, algorithm: str, env: dict[str, str], message: str
) -> None:
    project = render(framework=framework, jwt_algorithm=algorithm)
    assert_refused(project.path, framework, env, message)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("algorithm", sorted(MISSING))
def test_production_refuses_a_missing_key(
    render: Render, tmp_path: Path, framework: str, algorithm: str
) -> None:
    project = render(framework=framework, jwt_algorithm=algorithm)
    copy = shutil.copytree(project.path, tmp_path / "project")
    (copy / ".env").unlink()
    shutil.rmtree(copy / "keys", ignore_errors=True)
    assert_refused(copy, framework, {}, MISSING[algorithm])
    assert not (copy / "keys").exists()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_production_refuses_what_the_development_set_up_made(
    render: Render, tmp_path: Path, framework: str
) -> None:
    """The .env secret copier wrote, and the key ring a first start in development made."""
    hmac = render(framework=framework, jwt_algorithm="HS256")
    assert_refused(hmac.path, framework, {}, "JWT_SECRET is the development secret")
    project = render(framework=framework, jwt_algorithm="EdDSA")
    copy = shutil.copytree(project.path, tmp_path / "project")
    shutil.rmtree(copy / "keys", ignore_errors=True)
    made = Project(copy, project.answers).run(
        PYTHON,
        "-c",
        f"from {project.package}.{frameworks.framework(framework).entry} import app",
        env={"ENVIRONMENT": "development"},
    )
    assert made.returncode == 0, made.stderr
    assert (copy / "keys" / "keyring.json").is_file()
    assert_refused(copy, framework, {}, "holds the key ring made automatically for development")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_production_refuses_a_key_file_every_user_can_read(
    render: Render, tmp_path: Path, framework: str
) -> None:
    project = render(framework=framework, jwt_algorithm="EdDSA")
    key_file = tmp_path / "signing.pem"
    made = project.run(PYTHON, "-m", project.package, "keys", "generate")
    assert made.returncode == 0, made.stderr
    key_file.write_text(made.stdout)
    key_file.chmod(0o644)
    env = {"JWT_PRIVATE_KEY_FILE": str(key_file)}
    assert_refused(project.path, framework, env, "can be read by every user")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_environment_must_be_set_outside_a_checkout(
    render: Render, tmp_path: Path, framework: str
) -> None:
    project = render(framework=framework, jwt_algorithm="EdDSA")
    copy = shutil.copytree(project.path, tmp_path / "project")
    (copy / ".env").unlink()
    env = {"PYTHONPATH": str(copy / "src")}
    package = project.package
    returncode, output = run_to_exit(copy, framework, package, PYTHON, {**env, "ENVIRONMENT": ""})
    assert returncode != 0, output
    assert "ENVIRONMENT is not set: set ENVIRONMENT=production" in output
    assert "Traceback" not in output
