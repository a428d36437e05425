"""Upgrading a project that holds data: from the previous release (0.2.0, before migrations)
to this working tree, with users and sessions in a SQLite file and in PostgreSQL.

The project is rendered from the previous release's commit, its real server registers users
and starts sessions, `copier update` brings this tree in, the documented `db upgrade` adopts
the database, and the new server starts on it: the users log in with their passwords. Their
old sessions end, as the CHANGELOG says: tokens issued before 0.3.0 carry `typ: JWT`.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from liveserver import running_server
from projects import PYTHON, ROOT, Project
from servers import TEST_SERVER_SETTINGS
from test_update import copier, files_with_conflicts, git

#: The last commit of release 0.2.0, the last one before migrations.
PREVIOUS_RELEASE = "c65849e"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template repository with v0.2.0 at the previous release and v0.3.0 = this tree."""
    repo = tmp_path_factory.mktemp("releases") / "template-repo"
    cloned = subprocess.run(
        ["git", "clone", "-q", str(ROOT), str(repo)], capture_output=True, text=True, check=False
    )
    assert cloned.returncode == 0, cloned.stderr
    found = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    assert found.returncode == 0, f"{PREVIOUS_RELEASE} is missing: clone with full history"
    git(repo, "checkout", "-q", PREVIOUS_RELEASE)
    git(repo, "tag", "v0.2.0")
    git(repo, "checkout", "-q", "-B", "next")
    shutil.rmtree(repo / "template")
    shutil.copytree(ROOT / "template", repo / "template", symlinks=True)
    shutil.copy2(ROOT / "copier.yml", repo / "copier.yml")
    shutil.copy2(ROOT / "CHANGELOG.md", repo / "CHANGELOG.md")
    git(repo, "add", "-A", "-f")
    git(repo, "commit", "-qm", "release 0.3.0: this tree")
    git(repo, "tag", "v0.3.0")
    return repo


def serve(project: Path, answers: dict[str, Any], database_url: str) -> AbstractContextManager[str]:
    """The project's server in development, on `database_url`, with cheap hashing."""
    env = {
        "PYTHONPATH": str(project / "src"),
        "DATABASE_URL": database_url,
        "ENVIRONMENT": "development",
        **TEST_SERVER_SETTINGS,
    }
    return running_server(project, answers["framework"], answers["package_name"], PYTHON, env)


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_users_and_data_survive_the_update_to_migrations(
    releases: Path, tmp_path: Path, database_url: str, framework: str
) -> None:
    project = tmp_path / "project"
    made = copier(
        tmp_path,
        "copy",
        "--defaults",
        "--vcs-ref",
        "v0.2.0",
        "-d",
        f"framework={framework}",
        str(releases),
        str(project),
    )
    assert made.returncode == 0, made.stderr
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "from template 0.2.0")
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())

    username = f"kept-{uuid.uuid4().hex[:8]}"
    credentials = {"username": username, "password": PASSWORD}
    with serve(project, answers, database_url) as url, httpx.Client(base_url=url) as client:
        assert client.post("/auth/register", json=credentials).status_code == 201
        old = client.post("/auth/login", data=credentials).json()
        assert client.get(
            "/users/me", headers={"Authorization": f"Bearer {old['access_token']}"}
        ).is_success

    updated = copier(project, "update", "--defaults", "--vcs-ref", "v0.3.0")
    assert updated.returncode == 0, updated.stderr
    assert files_with_conflicts(project) == []
    assert "db upgrade" in updated.stdout + updated.stderr  # the after-update message
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_commit"] == "v0.3.0"
    assert (project / "src" / answers["package_name"] / "models.py").is_file()

    env = {"DATABASE_URL": database_url, "ENVIRONMENT": "production"}
    package = answers["package_name"]
    upgraded = Project(project, answers).run(PYTHON, "-m", package, "db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip() == (
        "Adopted the tables of template 0.2.0 (no migration history: stamped 0001), then "
        "upgraded the database from 0001 to 0004."
    )
    current = Project(project, answers).run(PYTHON, "-m", package, "db", "current", env=env)
    assert current.stdout.strip() == "0004 (up to date)"

    with serve(project, answers, database_url) as url, httpx.Client(base_url=url) as client:
        login = client.post("/auth/login", data={"grant_type": "password", **credentials})
        assert login.status_code == 200, login.text
        me = client.get(
            "/users/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
        )
        assert me.json()["username"] == username
        # Sessions from before the update end (CHANGELOG 0.3.0, "Everyone logs in once more").
        stale = client.post("/auth/refresh", json={"refresh_token": old["refresh_token"]})
        assert stale.status_code == 400
        assert stale.json()["detail"] == "A refresh token is required here."
        refused = client.get(
            "/users/me", headers={"Authorization": f"Bearer {old['access_token']}"}
        )
        assert refused.status_code == 401
