"""A project's own tables, made the way its README says: a model with a foreign key to the
template's `users`, the README's `alembic revision --autogenerate` commands word for word, `db
upgrade`, and the project's own suite still passing, on SQLite and on PostgreSQL.

One framework is enough: the models, the migrations and the code that runs them (`core/`,
`migrations/`) are the same in both (tests/test_render.py checks that the core is identical).
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from projects import BIN, Project, Render, assert_suite_passes
from suiterunner import SuiteRunner

ORDERS = '''

import uuid

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column


class Order(Base):
    """An order of a user's: a table of the project's own that needs the template's."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    item: Mapped[str] = mapped_column(String(100))
'''
#: A later change to the model: the README's second command makes its migration.
NOTE = "    note: Mapped[str | None] = mapped_column(String(200), default=None)\n"
#: A model added without a migration.
UNMIGRATED = '''

class Coupon(Base):
    """A table nobody made a migration for."""

    __tablename__ = "coupons"

    code: Mapped[str] = mapped_column(String(20), primary_key=True)
'''


#: The parts of the project's suite that a table of its own touches: the schema (migrations up
#: and down, adoption, drift), `db` commands, the emptying of tables between tests, and
#: deleting users (rows of the project's table point at them).
TOUCHED = [
    "tests/core/test_schema.py",
    "tests/core/test_cli.py",
    "tests/web/test_isolation.py",
    "tests/web/test_accounts.py",
]


def readme_commands(project: Project) -> list[str]:
    """The shell commands of the README's "Database and migrations" section, in order,
    without comments."""
    readme = (project.path / "README.md").read_text()
    section = readme.split("\n## Database and migrations\n")[1].split("\n## ")[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    lines = (line.split("  #")[0].strip() for block in blocks for line in block.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def run(project: Project, command: str, database_url: str) -> str:
    """Run one README command as written, `.venv/bin/` being this environment's."""
    argv = [
        str(BIN / word.removeprefix(".venv/bin/")) if word.startswith(".venv/bin/") else word
        for word in shlex.split(command)
    ]
    done = project.run(*argv, env={"DATABASE_URL": database_url, "ENVIRONMENT": "development"})
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_own_tables_made_as_the_readme_says(
    render: Render,
    suite_runner: SuiteRunner,
    tmp_path: Path,
    database_url: str,
    request: pytest.FixtureRequest,
) -> None:
    rendered = render(framework="fastapi")
    project = Project(tmp_path / "project", rendered.answers)
    shutil.copytree(rendered.path, project.path)
    commands = readme_commands(project)
    upgrade = next(c for c in commands if c.endswith(f"-m {project.package} db upgrade"))
    first = next(c for c in commands if "--head=base" in c)
    later = next(c for c in commands if "--head=custom@head" in c)
    models = project.path / "src" / project.package / "models.py"
    mine = project.path / "src" / project.package / "migrations" / "custom"

    run(project, upgrade, database_url)  # "with the database up to date"
    models.write_text(models.read_text() + ORDERS)
    run(project, first, database_url)
    run(project, upgrade, database_url)
    models.write_text(models.read_text() + NOTE)
    run(project, later, database_url)
    assert run(project, upgrade, database_url).startswith("Upgraded the database from ")
    assert len(list(mine.glob("*.py"))) == 2

    # A new database, as the suite makes one, builds the template's tables first; the tests
    # that make and drop tables, empty them, and delete users pass. (The whole suite is
    # tests/test_render.py's: these are the parts a table of the project's own touches.)
    postgresql = request.node.callspec.params["database_url"] == "postgresql"
    env = {"TEST_DATABASE_URL": request.getfixturevalue("postgres_url")} if postgresql else {}
    assert_suite_passes(project, env, runner=suite_runner, paths=TOUCHED)

    # A model without a migration: the suite says so, once, and what to run.
    models.write_text(models.read_text() + UNMIGRATED)
    code, output = suite_runner.run(
        project.path,
        project.environment({"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", **env}),
        ["-q", "-p", "no:cacheprovider", "tests/core/test_schema.py", "tests/web/test_health.py"],
        120,
    )
    assert code == 1, output[-3000:]
    assert "models differ from migrations: the migrations do not build" in output
    assert "'add_table'" in output
    assert "coupons" in output
    assert "alembic revision --autogenerate" in output
    assert "no such table" not in output
    assert "does not exist" not in output
    assert "Traceback" not in output
