"""The database schema, managed by Alembic migrations.

The template's migrations (`migrations/versions`, branch `template`) and the project's own
(`migrations/custom`, branch `custom`) are two branches; "up to date" means at every head.
`<package> db upgrade` applies what is missing. A development service does so on start; any
other refuses to start while the database is behind the code, and says which command to run.

Databases made before migrations (by `create_all`, template 0.2.0) have the tables but no
version table: they are recognised by their columns, stamped at revision 0001, then
upgraded. The data stays.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from collections.abc import Iterator
from importlib.resources import as_file, files
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, inspect

from .db import Database
from .errors import ConfigError, ServiceUnavailable

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
        return frozenset(ScriptDirectory.from_config(config).get_heads())


def heads() -> set[str]:
    """The revisions the code needs (one per branch); read once per process."""
    return set(_heads())


def current(database: Database) -> set[str]:
    """The revisions the database is at (empty: none)."""
    with database.guarded(), database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return set(context.get_current_heads())


def upgrade(database: Database, target: str = "heads") -> None:
    """Adopt a database made before migrations, then apply every missing migration. No
    deadline: a migration may take minutes (`Database.maintenance`)."""
    with database.maintenance() as connection, _known_revisions():
        _adopt(connection)
        with _config(connection) as config:
            command.upgrade(config, target)


def downgrade(database: Database, target: str) -> None:
    """Undo migrations down to `target` (a revision, or `base` for none)."""
    with database.maintenance() as connection, _known_revisions(), _config(connection) as config:
        command.downgrade(config, target)


@contextlib.contextmanager
def _known_revisions() -> Iterator[None]:
    """A revision this code does not know (newer code ran here) is a `ConfigError`."""
    try:
        yield
    except CommandError as exc:
        raise ConfigError(
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
    raise ConfigError(f"DATABASE_URL: {behind(found, needed)}")


def behind(found: set[str], needed: set[str]) -> str:
    """Say how the database's revisions differ from the code's, and what to do."""
    at = ", ".join(sorted(found)) or "no revision (empty, or made before migrations)"
    return (
        f"the database schema is not the code's (it is at {at}; the code needs "
        f"{', '.join(sorted(needed))}); run `python -m {PACKAGE} db upgrade`, then start again"
    )


def check(database: Database) -> None:
    """Readiness: raise `ServiceUnavailable` while the database is not at the code's schema
    (a service that started while the database was away has not checked it yet)."""
    found, needed = current(database), heads()
    if found != needed:
        raise ServiceUnavailable(f"The database is not ready: {behind(found, needed)}.")


def _adopt(connection: Connection) -> None:
    """Stamp a database made by `create_all` at the baseline, after checking its tables."""
    tables = set(inspect(connection).get_table_names())
    if VERSION_TABLE in tables or not tables & BASELINE_TABLES.keys():
        return
    for table, columns in BASELINE_TABLES.items():
        found = set()
        if table in tables:
            found = {column["name"] for column in inspect(connection).get_columns(table)}
        if found != columns:
            raise ConfigError(
                f"DATABASE_URL: the database has no migration history and its table {table!r} "
                f"is not the one template 0.2.0 made (columns {sorted(found)}, expected "
                f"{sorted(columns)}); bring it to that schema by hand, then "
                f"`alembic stamp {BASELINE}` and `db upgrade`"
            )
    with _config(connection) as config:
        command.stamp(config, BASELINE)
