"""Database engine, sessions and tables (SQLAlchemy 2; SQLite by default)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Select,
    String,
    Uuid,
    bindparam,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

CREATE_ATTEMPTS = 5


class Base(DeclarativeBase):
    """Declarative base of every table."""


class User(Base):
    """A registered user; `username_key` is the lower-cased name that makes names unique."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(64))
    username_key: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=lambda: datetime.now(UTC)
    )


class Revocation(Base):
    """A revoked token `jti` or login session `sid`, kept until its tokens would have expired."""

    __tablename__ = "revocations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


#: The revocation of a token (bound as `token_id`) or of its login (`session_id`): one read by
#: primary key. Bind it with `revocation_parameters`.
REVOKED = select(Revocation.id).where(
    Revocation.id.in_([bindparam("token_id"), bindparam("session_id")])
)


def revocation_parameters(token_id: str | None, session_id: str | None = None) -> dict[str, str]:
    """`REVOKED`'s parameters; an id not given matches nothing (no revocation id is empty)."""
    return {"token_id": token_id or "", "session_id": session_id or token_id or ""}


class RefreshToken(Base):
    """One refresh token of a rotating session, by `jti`; the token itself is never stored."""

    __tablename__ = "refresh_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    used_at: Mapped[int | None] = mapped_column(BigInteger, default=None)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run while a writer commits; busy_timeout waits instead of failing.
    # With WAL, synchronous=NORMAL cannot corrupt the database (SQLite's documented advice);
    # a power cut may lose the last commits, and a commit costs no fsync.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Database:
    """Owns the engine and hands out sessions that commit on success and roll back on error."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._prepared: list[PreparedRead] = []

    def create_tables(self) -> None:
        """Create any missing table; safe when several workers start at the same moment.

        Two processes can both see a table missing and both create it; the loser's error is
        retried, and the retry finds the table. (A migration tool will replace this.)
        """
        for attempt in range(CREATE_ATTEMPTS):
            try:
                Base.metadata.create_all(self.engine)
                return
            except DBAPIError:
                if attempt == CREATE_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Yield a session inside one transaction."""
        with self._sessions.begin() as session:
            yield session

    def prepare(self, statement: Select) -> PreparedRead:
        """Compile a read for this database once; see `PreparedRead`."""
        prepared = PreparedRead(self.engine, statement)
        self._prepared.append(prepared)
        return prepared

    def dispose(self) -> None:
        """Close every connection: the pool's and the prepared reads'."""
        for prepared in self._prepared:
            prepared.close()
        self.engine.dispose()


class PreparedRead:
    """A SELECT compiled once for the engine's dialect and run straight on a DB-API connection.

    For the one read on every authenticated request. On SQLite each thread keeps a connection
    of its own for it (in autocommit, so a read holds no transaction open), and the read takes
    about 10 us; elsewhere it borrows a pooled connection. The same statement through a
    SQLAlchemy session takes 150-600 us. Parameters go through their column types' bind
    processors (a UUID becomes what the database stores); rows come back as the driver gives
    them, with no type conversion: select plain columns.
    """

    def __init__(self, engine: Engine, statement: Select) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        self._engine = engine
        #: The statement as the database receives it.
        self.sql = str(compiled)
        self._positions = compiled.positiontup  # the parameter order, for positional styles
        # Values the statement binds itself, such as a LIMIT.
        self._fixed = {
            name: bind.value for name, bind in compiled.binds.items() if not bind.required
        }
        self._processors = {
            name: processor
            for name, bind in compiled.binds.items()
            if (processor := bind.type.bind_processor(engine.dialect)) is not None
        }
        self._local = threading.local() if engine.dialect.name == "sqlite" else None
        self._opened: list[Any] = []
        self._lock = threading.Lock()

    def first(self, parameters: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row for these bound parameters, or None."""
        arguments: Any = {**self._fixed, **parameters}
        for name, processor in self._processors.items():
            arguments[name] = processor(arguments[name])
        if self._positions is not None:
            arguments = [arguments[name] for name in self._positions]
        if self._local is not None:
            return self._own_connection().execute(self.sql, arguments).fetchone()
        connection = self._engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(self.sql, arguments)
                return cursor.fetchone()
            finally:
                cursor.close()
        finally:
            connection.close()  # back to the pool, which rolls the read's transaction back

    def close(self) -> None:
        """Close the threads' own connections (SQLite)."""
        with self._lock:
            for connection in self._opened:
                connection.close()
            self._opened.clear()
        if self._local is not None:
            self._local = threading.local()

    def _own_connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            dialect = self._engine.dialect
            arguments, options = dialect.create_connect_args(self._engine.url)
            options = {**options, "isolation_level": None, "check_same_thread": False}
            connection = dialect.loaded_dbapi.connect(*arguments, **options)
            _sqlite_pragmas(connection, None)
            with self._lock:
                self._opened.append(connection)
            self._local.connection = connection
        return connection
