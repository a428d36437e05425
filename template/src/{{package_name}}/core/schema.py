"""The database schema, managed by Alembic migrations.

The template's migrations (`migrations/versions`, branch `template`) and the project's own
(`migrations/custom`, branch `custom`) are two branches; "up to date" means at every head.
`<package> db upgrade` applies what is missing. A development service does so on start; any
other refuses to start while the database is behind the code, and says which command to run.

Databases made before migrations (by `create_all`, template 0.2.0) have the tables but no
version table: they are recognised by their columns, stamped at revision 0001, then
upgraded. The data stays. A database of template 0.1.0 (its users table only) is refused with
a message: it reaches 0.2.0's tables by running the project once at 0.2.0 (CHANGELOG).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from collections.abc import Iterator
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, inspect
from sqlalchemy.exc import DBAPIError

from .db import Base, Database
from .errors import SchemaError, ServiceUnavailable

PACKAGE = __package__.partition(".")[0]
#: Where the applied revisions are recorded: a table of this project's own, so another
#: Alembic-managed application sharing the database is never mistaken for this one.
VERSION_TABLE = f"{PACKAGE}_schema_version"
#: The revision whose schema `create_all` made before there were migrations.
BASELINE = "0001"
#: The tables and columns of that schema.
BASELINE_TABLES = {
    "users": {"id", "username", "username_key", "password_hash", "created_at"},
    "revocations": {"id", "expires_at"},
    "refresh_tokens": {"jti", "session_id", "user_id", "expires_at", "used_at"},
}


@contextlib.contextmanager
def _config(
    connection: Connection | None = None, stdout: io.StringIO | None = None
) -> Iterator[Config]:
    """Alembic's configuration for the package's migrations, on `connection` if given; what
    its commands print goes to `stdout` (else nowhere)."""
    with as_file(files(PACKAGE) / "migrations") as location:
        config = Config(stdout=stdout or io.StringIO())
        config.set_main_option("script_location", str(location))
        config.set_main_option("path_separator", "os")
        versions = [str(Path(location) / "versions"), str(Path(location) / "custom")]
        config.set_main_option("version_locations", os.pathsep.join(versions))
        config.attributes["connection"] = connection
        yield config


@functools.cache
def _heads() -> frozenset[str]:
    with _config() as config:
        script = ScriptDirectory.from_config(config)
        tips = set(script.get_heads())
        # A head that another head depends on (your branch's `depends_on` the template's
        # revision) is not recorded apart: Alembic's version table holds the other one only.
        implied = {
            revision.revision
            for tip in tips
            for revision in script.iterate_revisions(tip, "base")
            if revision.revision != tip
        }
        return frozenset(tips - implied)


def heads() -> set[str]:
    """The revisions the code needs, as the version table records them once the database is
    up to date (one per branch, less a branch's head that another depends on); read once per
    process."""
    return set(_heads())


def current(database: Database) -> set[str]:
    """The revisions the database is at (empty: none)."""
    with database.guarded(), database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return set(context.get_current_heads())


def upgrade(database: Database, target: str = "heads") -> bool:
    """Adopt a database made before migrations, then apply every missing migration; return
    whether it adopted one. No deadline: a migration may take minutes (`Database.maintenance`).
    """
    with _failed("the upgrade"), database.maintenance() as connection, _known_revisions():
        adopted = _adopt(connection)
        with _config(connection) as config:
            command.upgrade(config, target)
    return adopted


def downgrade(database: Database, target: str) -> None:
    """Undo migrations down to `target` (a revision, or `base` for none)."""
    try:
        with (
            _failed(f"the downgrade to {target}"),
            database.maintenance() as connection,
            _config(connection) as config,
        ):
            command.downgrade(config, target)
    except CommandError as exc:
        raise SchemaError(
            f"cannot downgrade to {target!r}: {exc} (`python -m {PACKAGE} db history` lists "
            f"the migrations; a revision in the database that this code does not know was "
            f"applied by another version of the project)"
        ) from exc


@contextlib.contextmanager
def _failed(what: str) -> Iterator[None]:
    """A migration the database refused (a table or view of yours needs what it would drop, a
    row breaks a new constraint) is a `SchemaError` that says so, not a traceback."""
    try:
        yield
    except DBAPIError as exc:
        reason = (str(exc.orig or exc).strip().splitlines() or [type(exc.orig).__name__])[0]
        raise SchemaError(
            f"DATABASE_URL: {what} failed: the database refused it ({reason}); fix that, then "
            f"run the command again (`python -m {PACKAGE} db current` says where it stands)"
        ) from exc


@contextlib.contextmanager
def _known_revisions() -> Iterator[None]:
    """A revision this code does not know (newer code ran here) is a `SchemaError`."""
    try:
        yield
    except CommandError as exc:
        raise SchemaError(
            f"DATABASE_URL: {exc}; the database was migrated by another version of this "
            f"project (newer code?): deploy that version, or downgrade the database with it"
        ) from exc


def history() -> str:
    """Every migration, newest first, as `alembic history` prints it."""
    output = io.StringIO()
    with _config(stdout=output) as config:
        command.history(config)
    return output.getvalue()


def prepare(database: Database, *, development: bool) -> None:
    """At start: in development, migrate; elsewhere, refuse a database behind the code."""
    needed, found = heads(), current(database)
    if found == needed:
        return
    if development:
        upgrade(database)
        return
    raise SchemaError(f"DATABASE_URL: {behind(found, needed)}")


def behind(found: set[str], needed: set[str]) -> str:
    """Say how the database's revisions differ from the code's, and what to do."""
    at = ", ".join(sorted(found)) or "no revision (empty, or made before migrations)"
    return (
        f"the database schema is not the code's (it is at {at}; the code needs "
        f"{', '.join(sorted(needed))}); run `python -m {PACKAGE} db upgrade`, then start again"
    )


def differences(database: Database) -> list[Any]:
    """How the models (the core's and `models.py`'s) differ from the database's tables, as
    `alembic revision --autogenerate` would see it; empty when a migration covers them."""
    from .. import models  # noqa: F401 - the project's own tables join the metadata

    with database.guarded(), database.engine.connect() as connection:
        options = {"compare_type": True, "version_table": VERSION_TABLE}
        context = MigrationContext.configure(connection, opts=options)
        found: list[Any] = compare_metadata(context, Base.metadata)
        return found


def check(database: Database) -> None:
    """Readiness: raise `ServiceUnavailable` while the database is not at the code's schema
    (a service that started while the database was away has not checked it yet)."""
    found, needed = current(database), heads()
    if found != needed:
        raise ServiceUnavailable(f"The database is not ready: {behind(found, needed)}.")


def _adopt(connection: Connection) -> bool:
    """Stamp a database made by `create_all` at the baseline, after checking its tables;
    return whether it did."""
    tables = set(inspect(connection).get_table_names())
    if VERSION_TABLE in tables or not tables & BASELINE_TABLES.keys():
        return False
    if tables & BASELINE_TABLES.keys() == {"users"} and _columns(connection, "users") == set(
        BASELINE_TABLES["users"]
    ):
        raise SchemaError(
            "DATABASE_URL: the database was made by template 0.1.0 (a users table only, no "
            "migration history); it is adopted from 0.2.0's tables: run the project once at "
            "template 0.2.0 first (TEMPLATE-CHANGELOG.md, 0.3.0, 'Updating from 0.1.0'), "
            "then `db upgrade`"
        )
    for table, columns in BASELINE_TABLES.items():
        found = set()
        if table in tables:
            found = _columns(connection, table)
        if found != columns:
            raise SchemaError(
                f"DATABASE_URL: the database has no migration history and its table {table!r} "
                f"is not the one template 0.2.0 made (columns {sorted(found)}, expected "
                f"{sorted(columns)}); bring it to that schema by hand, then "
                f"`alembic stamp {BASELINE}` and `db upgrade`"
            )
    with _config(connection) as config:
        command.stamp(config, BASELINE)
    return True


def _columns(connection: Connection, table: str) -> set[str]:
    return {column["name"] for column in inspect(connection).get_columns(table)}
