"""`copier update` brings a template change into a project and keeps the user's edits and secrets."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from projects import BIN, PYTHON, ROOT, Project, assert_suite_passes

GIT = [
    "git",
    "-c",
    "user.name=Test",
    "-c",
    "user.email=test@example.com",
    "-c",
    "init.defaultBranch=main",
]
CONFLICT_MARKERS = ("<<<<<<< ", ">>>>>>> ")
#: The changelog entry the fixture's release 0.2.0 adds.
RELEASE_NOTE = "## 0.2.0 (the fixture's)\n\n- Upgrading is documented.\n"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def copier(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the copier command line as a user would: no --trust."""
    return subprocess.run(
        [BIN / "copier", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


@pytest.fixture
def releases(tmp_path: Path) -> Path:
    """The template as a git repository with two tagged releases, v0.1.0 and v0.2.0."""
    repo = tmp_path / "template-repo"
    repo.mkdir()
    shutil.copy2(ROOT / "copier.yml", repo / "copier.yml")
    shutil.copytree(ROOT / "template", repo / "template")
    git(repo, "init", "-q")
    git(repo, "add", "-A", "-f")
    git(repo, "commit", "-qm", "release 0.1.0")
    git(repo, "tag", "v0.1.0")
    readme = repo / "template" / "README.md.jinja"
    readme.write_text(readme.read_text() + "\n## Upgrading\n\nRun `copier update`.\n")
    changelog = repo / "template" / "TEMPLATE-CHANGELOG.md"  # a copy: copytree follows links
    changelog.write_text(changelog.read_text().replace("\n## ", f"\n{RELEASE_NOTE}\n## ", 1))
    # The template's own version of the files it makes once changes too: updates must not
    # bring that change into a project (the project's copy is the user's).
    for made_once in [
        *repo.glob("template/src/*/models.py"),
        *repo.glob("template/src/*/*/routes/custom.py"),
    ]:
        made_once.write_text(made_once.read_text() + "\n# changed in the template's 0.2.0\n")
    git(repo, "commit", "-qam", "release 0.2.0: document upgrading")
    git(repo, "tag", "v0.2.0")
    return repo


def files_with_conflicts(project: Path) -> list[str]:
    found = []
    for path in project.rglob("*"):
        if ".git" in path.parts or not path.is_file():
            continue
        if path.suffix == ".rej" or any(
            m in path.read_text(errors="replace") for m in CONFLICT_MARKERS
        ):
            found.append(str(path.relative_to(project)))
    return found


def snapshot(project: Path) -> dict[str, bytes]:
    """The bytes of every file that holds a secret: .env and the key ring."""
    paths = [project / ".env", *sorted((project / "keys").glob("*"))]
    return {str(path.relative_to(project)): path.read_bytes() for path in paths if path.is_file()}


@pytest.mark.parametrize(
    ("framework", "algorithm"),
    [("fastapi", "HS256"), ("flask", "EdDSA")],
    ids=["fastapi-HS256", "flask-EdDSA"],
)
def test_update_keeps_edits_and_secrets(
    releases: Path, tmp_path: Path, framework: str, algorithm: str
) -> None:
    project = tmp_path / "project"
    answers = ["-d", f"framework={framework}", "-d", f"jwt_algorithm={algorithm}"]
    made = copier(
        tmp_path, "copy", "--defaults", "--vcs-ref", "v0.1.0", *answers, str(releases), str(project)
    )
    assert made.returncode == 0, made.stderr
    # The message after the copy says to put the project under git and commit, naming the
    # template's commit; the test does what it says.
    release = git(releases, "rev-parse", "v0.1.0")[:12]
    assert "Put the project under git and commit now" in made.stderr
    assert f'git init && git add -A && git commit -m "From copier-jwt-auth {release}"' in (
        made.stderr
    )
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "from template 0.1.0")
    health = next(project.glob("src/*/web/routes/health.py"))
    edited = health.read_text().replace(
        '"""Liveness: answer while the process can serve requests (no database)."""',
        '"""Liveness: answer while the process serves requests; our load balancer polls this."""',
    )
    assert edited != health.read_text()
    health.write_text(edited)
    models = next(project.glob("src/*/models.py"))
    custom = next(project.glob("src/*/web/routes/custom.py"))
    mine = {path: path.read_text() + "\n# the user's own\n" for path in (models, custom)}
    for path, text in mine.items():
        path.write_text(text)
    git(project, "commit", "-qam", "user edit")
    recorded = yaml.safe_load((project / ".copier-answers.yml").read_text())
    if algorithm == "EdDSA":  # the development key pair, as the first start makes it
        made_keys = Project(project, recorded).run(
            PYTHON, "-m", recorded["package_name"], "keys", "rotate"
        )
        assert made_keys.returncode == 0, made_keys.stderr
    secrets_before = snapshot(project)
    assert len(secrets_before) == (3 if algorithm == "EdDSA" else 1)
    answers_before = yaml.safe_load((project / ".copier-answers.yml").read_text())

    updated = copier(project, "update", "--defaults", "--vcs-ref", "v0.2.0")

    assert updated.returncode == 0, updated.stderr
    assert_after_update_message(project, updated.stderr, recorded["package_name"])
    assert "Run `copier update`." in (project / "README.md").read_text()
    assert "our load balancer polls this" in health.read_text()
    for path, text in mine.items():
        assert path.read_text() == text  # made once: the template's change stays out
    assert files_with_conflicts(project) == []
    assert snapshot(project) == secrets_before
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_commit"] == "v0.2.0"
    assert {k: v for k, v in answers.items() if k != "_commit"} == {
        k: v for k, v in answers_before.items() if k != "_commit"
    }
    recorded = (project / ".copier-answers.yml").read_text()
    for content in secrets_before.values():
        for line in content.decode().splitlines():
            if len(line) > 20:
                assert line.split("=")[-1] not in recorded
    assert_suite_passes(Project(project, answers))


def assert_after_update_message(project: Path, printed: str, package: str) -> None:
    """Copier names the version, and the message's every step is there and does what it
    says in this project."""
    assert "Updating to template version 0.2.0" in printed
    steps = [
        "1. Conflicts: `git status` lists files with conflicts",
        "`git diff --check` finds leftover markers",
        "2. What changed: `git diff HEAD -- TEMPLATE-CHANGELOG.md` shows the template's changelog",
        f"3. The database: `python -m {package} db upgrade` applies new migrations",
        "4. Run the tests: `.venv/bin/pytest`.",
    ]
    message = " ".join(printed.split())  # the message wraps its lines
    for step in steps:
        assert step in message, step
    assert "both modified" not in git(project, "status")
    assert git(project, "diff", "--check") == ""  # exits 2 if it finds a marker
    changes = git(project, "diff", "HEAD", "--", "TEMPLATE-CHANGELOG.md")
    assert "".join(f"+{line}\n" for line in RELEASE_NOTE.splitlines()) in changes


def test_update_with_a_changed_answer(releases: Path, tmp_path: Path) -> None:
    """`copier update --data refresh_strategy=stateless` re-renders for the new answer."""
    project = tmp_path / "project"
    made = copier(
        tmp_path, "copy", "--defaults", "--vcs-ref", "v0.1.0", str(releases), str(project)
    )
    assert made.returncode == 0, made.stderr
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "from template 0.1.0")

    updated = copier(
        project,
        "update",
        "--defaults",
        "--vcs-ref",
        "v0.2.0",
        "--data",
        "refresh_strategy=stateless",
    )

    assert updated.returncode == 0, updated.stderr
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["refresh_strategy"] == "stateless"
    settings = next(project.glob("src/*/settings.py")).read_text()
    assert 'Strategy("stateless")' in settings
    assert files_with_conflicts(project) == []
    assert_suite_passes(Project(project, answers))
