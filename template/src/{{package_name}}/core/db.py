"""Database engine, sessions and tables (SQLAlchemy 2; SQLite by default).

Every database call has a deadline (`DatabaseLimits`): connecting, each statement, waiting for
a pooled connection, and the whole operation (see `availability`). A database that is down,
stalled or slow makes the call fail with `ServiceUnavailable` (503) within that time; the
outage is logged once, and the next call that works says it is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    Integer,
    String,
    Uuid,
    and_,
    bindparam,
    create_engine,
    event,
    or_,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.sql.selectable import SelectBase

from .availability import Health, Watchdog
from .errors import ValidationFailed

if TYPE_CHECKING:
    import sqlite3

    from .async_reads import AsyncReads
    from .claims import Claims, RefreshClaims


@dataclass(frozen=True)
class DatabaseLimits:
    """How long the service waits for its database, and how many connections it keeps."""

    connect_seconds: float = 5.0
    statement_seconds: float = 5.0
    pool_size: int = 16

    @property
    def operation_seconds(self) -> float:
        """The deadline of one operation: a connection, a statement and a margin."""
        return self.connect_seconds + self.statement_seconds + 1.0


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
    #: Where password-reset messages go (optional); `email_key`, lower-cased, makes it unique.
    email: Mapped[str | None] = mapped_column(String(254), default=None)
    email_key: Mapped[str | None] = mapped_column(String(254), unique=True, index=True)
    #: A disabled user cannot log in or refresh (`cli users disable`).
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    #: The user's scopes (roles), space-separated and sorted: the access token's `scope` claim
    #: (`cli users grant|revoke`, `claims.SCOPES`).
    scopes: Mapped[str] = mapped_column(String(1024), default="", server_default="")


class Revocation(Base):
    """A revoked token `jti` or login session `sid`, kept until its tokens would have expired."""

    __tablename__ = "revocations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    #: When it was revoked (None: before migration 0002); see `revocations`.
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, default=None)


#: The revocation of a token (bound as `token_id`), of its login (`session_id`), or of every
#: token its user was issued up to a second (`user_key`, see `user_key`; that entry's
#: `revoked_at` is the last second cut off, compared with the token's `issued_at`): one read
#: by primary key. Bind it with `revocation_parameters`.
REVOKED = select(Revocation.id).where(
    or_(
        Revocation.id.in_([bindparam("token_id"), bindparam("session_id")]),
        and_(
            Revocation.id == bindparam("user_key"),
            Revocation.revoked_at >= bindparam("issued_at"),
        ),
    )
)


def user_key(user_id: object) -> str:
    """The revocation id that cuts off every token of a user issued up to its `revoked_at`."""
    return f"user:{user_id}"


def revocation_parameters(claims: Claims | RefreshClaims) -> dict[str, object]:
    """`REVOKED`'s parameters for a token's claims (`jti`, `sub`, `iat`, and `sid` if any)."""
    return {
        "token_id": claims["jti"],
        "session_id": claims.get("sid") or claims["jti"],
        "user_key": user_key(claims["sub"]),
        "issued_at": claims["iat"],
    }


class RefreshToken(Base):
    """One refresh token of a rotating session, by `jti`; the token itself is never stored."""

    __tablename__ = "refresh_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    used_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    #: The `jti` of the token issued when this one was used (it was issued at `used_at`).
    replaced_by: Mapped[str | None] = mapped_column(String(64), default=None)


class PasswordReset(Base):
    """An outstanding password-reset token, by the SHA-256 of the token (never the token)."""

    __tablename__ = "password_resets"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class ThrottleCounter(Base):
    """A throttling counter (`throttle`): the hits of one key (a client address, an account)
    in its current window, and until when that key is refused."""

    __tablename__ = "throttle_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer)
    #: When the count starts again from zero (epoch seconds).
    window_ends_at: Mapped[float] = mapped_column(Float, index=True)
    #: Until when requests of this key are refused (429), or 0.
    blocked_until: Mapped[float] = mapped_column(Float, default=0.0)


def _sqlite_pragmas(dbapi_connection: Any, busy_milliseconds: int) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run while a writer commits; busy_timeout waits instead of failing.
    # With WAL, synchronous=NORMAL cannot corrupt the database (SQLite's documented advice);
    # a power cut may lose the last commits, and a commit costs no fsync.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={busy_milliseconds}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


#: Errors that may mean the database could not be reached or did not answer in time.
UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)
#: SQLite reports every error as an OperationalError; only these mean "not now" (locked, cannot
#: be opened, I/O failed, disk full). Its others (a missing table) are bugs, answered with 500.
SQLITE_UNAVAILABLE = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_CANTOPEN",
    "SQLITE_IOERR",
    "SQLITE_FULL",
)


class WouldWait(Exception):
    """A read on an event loop's thread found the SQLite file locked: it did not wait (the loop
    must never wait on the database), and the caller reads again in a worker thread."""


def _is_locked(exc: BaseException) -> bool:
    name = getattr(exc, "sqlite_errorname", None) or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


def _on_event_loop() -> bool:
    """Whether this thread runs an event loop (an async server's)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def is_unavailable(exc: BaseException) -> bool:
    """Whether a database error means the database is down, stalled or too busy."""
    cause = getattr(exc, "orig", None) or exc
    name = getattr(cause, "sqlite_errorname", None)
    return name is None or name.startswith(SQLITE_UNAVAILABLE)


#: The server process's id: behind a connection pooler (PgBouncer, in any mode) it is not the
#: one the connection was told when it opened, which is the pooler's own (`pooled`).
SERVER_PROCESS = "SELECT pg_backend_pid()"


def pooled(connection: Any, server_process: Sequence[Any] | None) -> bool:
    """Whether a psycopg `connection`, which answered `server_process` to `SERVER_PROCESS`, goes
    through a connection pooler."""
    return server_process is None or server_process[0] != connection.info.backend_pid


def session_setting(
    connection: Any, server_process: Sequence[Any] | None, statement_seconds: float
) -> str | None:
    """What a new psycopg `connection`, which answered `server_process` to `SERVER_PROCESS`,
    needs: the `SET` that gives it the statement timeout; or, behind a pooler, nothing, with
    psycopg's prepared statements turned off. A pooler in transaction mode lends each
    transaction any of its server connections: a statement psycopg prepared (it does after
    five runs) is unknown to the others, and a `SET` would stay on the one lent then, for the
    pooler's other clients (set the timeout on the role or in the pooler instead)."""
    if pooled(connection, server_process):
        connection.prepare_threshold = None
        return None
    return statement_timeout(statement_seconds)


def statement_timeout(seconds: float) -> str:
    """The `SET` that stops this session's statements after `seconds` (PostgreSQL)."""
    return f"SET statement_timeout = {int(seconds * 1000)}"


def _engine_options(url: str, limits: DatabaseLimits) -> dict[str, Any]:
    """`create_engine` options that bound every wait, for the database `url` names."""
    # Parameters stay out of logs and error messages: they may hold usernames or token ids.
    options: dict[str, Any] = {"hide_parameters": True}
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return options
    options |= {
        "pool_size": limits.pool_size,
        "max_overflow": 0,
        "pool_timeout": limits.statement_seconds,  # waiting for a free connection
        "pool_recycle": 1800,
    }
    if parsed.get_driver_name() == "psycopg":
        options["connect_args"] = {
            "connect_timeout": max(1, math.ceil(limits.connect_seconds)),
            # A peer that vanishes (host down, network cut) is noticed: unacknowledged data
            # closes the connection, and idle ones are probed.
            "tcp_user_timeout": int(limits.operation_seconds * 1000),
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
    return options


def _create_private_file(url: str) -> None:
    """Create a SQLite database file that only its owner can read, before SQLite makes one
    with the umask's mode (its -wal and -shm files take the database file's mode)."""
    path = make_url(url).database
    if path and path != ":memory:" and not path.startswith("file:") and not os.path.exists(path):
        # Made by another worker first, or no folder for it: SQLite says so when it opens it.
        with contextlib.suppress(FileExistsError, FileNotFoundError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class Database:
    """Owns the engine and hands out sessions that commit on success and roll back on error."""

    def __init__(self, url: str, limits: DatabaseLimits | None = None) -> None:
        self.limits = limits or DatabaseLimits()
        options = _engine_options(url, self.limits)
        self.engine: Engine = create_engine(url, **options)
        #: The driver's connect options that bound its waits (`async_reads` uses them too).
        self.connect_options: dict[str, Any] = options.get("connect_args", {})
        self.watchdog = Watchdog(self.limits.operation_seconds)
        self.health = Health()
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            _create_private_file(url)
            busy = int(self.limits.statement_seconds * 1000)
            event.listen(self.engine, "connect", lambda conn, _: _sqlite_pragmas(conn, busy))
        else:
            event.listen(self.engine, "checkout", self._checked_out)
        if dialect == "postgresql":
            event.listen(self.engine, "connect", self._set_up_connection)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        #: What `guarded` may turn into `ServiceUnavailable`: SQLAlchemy's errors, and the
        #: driver's own (prepared reads meet them).
        self._unavailable: tuple[type[BaseException], ...] = (*UNAVAILABLE, *self.driver_errors)
        self._prepared: list[PreparedRead] = []
        #: Called by `dispose`, before the connections close (a listener's `stop`, say).
        self.on_dispose: list[Callable[[], None]] = []
        #: The event loop's own connections for prepared reads (`open_async_reads`), or None.
        self.async_reads: AsyncReads | None = None

    def _checked_out(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if hasattr(dbapi_connection, "fileno"):
            self.watchdog.uses(dbapi_connection)

    def _set_up_connection(self, dbapi_connection: Any, _record: Any) -> None:
        """A new PostgreSQL connection: its statement timeout, or behind a pooler no prepared
        statements (`session_setting`)."""
        seconds = self.limits.statement_seconds
        cursor = dbapi_connection.cursor()
        setting: str | None = statement_timeout(seconds)
        if hasattr(dbapi_connection, "prepare_threshold"):  # psycopg 3
            cursor.execute(SERVER_PROCESS)
            setting = session_setting(dbapi_connection, cursor.fetchone(), seconds)
        if setting is not None:
            cursor.execute(setting)
        cursor.close()
        dbapi_connection.commit()

    @contextmanager
    def guarded(self, *, deadline: bool = True) -> Iterator[None]:
        """Run database work with its deadline, turning an unreachable database into
        `ServiceUnavailable` and a value it cannot store into `ValidationFailed`. Maintenance
        (migrations, cleanup) runs with `deadline=False`: it may take long on purpose."""
        # A local SQLite file cannot stall like a network peer: its own busy timeout will do.
        watched = deadline and self.engine.dialect.name != "sqlite"
        try:
            with self.watchdog.operation() if watched else contextlib.nullcontext():
                yield
        except sa_exc.DataError as exc:
            raise ValidationFailed("The request holds a value that cannot be stored.") from exc
        except self._unavailable as exc:
            if is_unavailable(exc):
                raise self.health.failed(exc) from exc
            raise
        self.health.succeeded()

    @property
    def driver_errors(self) -> tuple[type[BaseException], ...]:
        """The driver's own errors for a connection that failed (prepared reads meet them)."""
        dbapi = self.engine.dialect.loaded_dbapi
        return (dbapi.OperationalError, dbapi.InterfaceError)

    @contextmanager
    def maintenance(self) -> Iterator[Connection]:
        """A transaction for maintenance work (migrations, cleanup): no watchdog deadline and,
        on PostgreSQL, no statement timeout, since building an index or deleting a large
        backlog may take minutes. Connection failures still raise `ServiceUnavailable`."""
        with self.guarded(deadline=False), self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
            yield connection

    def ping(self) -> None:
        """Check that the database answers (readiness); raise `ServiceUnavailable` if not."""
        with self.session() as session:
            session.execute(select(1))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Yield a session inside one transaction, guarded (see `guarded`)."""
        with self.guarded(), self._sessions.begin() as session:
            yield session

    def prepare(self, statement: SelectBase) -> PreparedRead:
        """Compile a read for this database once; see `PreparedRead`."""
        prepared = PreparedRead(self, statement)
        self._prepared.append(prepared)
        return prepared

    def open_async_reads(self) -> AsyncReads | None:
        """Let prepared reads run on the calling event loop (`PreparedRead.first_async`), on
        PostgreSQL through psycopg; elsewhere None. `close_async_reads` on the same loop."""
        if self.engine.dialect.name == "postgresql" and self.engine.driver == "psycopg":
            from .async_reads import AsyncReads  # imports psycopg, a PostgreSQL extra

            self.async_reads = AsyncReads(self)
        return self.async_reads

    async def close_async_reads(self) -> None:
        """Close the event loop's connections (see `open_async_reads`)."""
        reads, self.async_reads = self.async_reads, None
        if reads is not None:
            await reads.close()

    def dispose(self) -> None:
        """Close every connection: the pool's and the prepared reads'."""
        for callback in self.on_dispose:
            callback()
        for prepared in self._prepared:
            prepared.close()
        self.engine.dispose()


class PreparedRead:
    """A SELECT compiled once for the engine's dialect and run straight on a DB-API connection.

    For the reads of the authenticated path. On SQLite each thread keeps a connection of its
    own for them (an event loop's thread one that never waits for a lock: `WouldWait`);
    elsewhere they borrow a pooled connection, or an event loop's own (`first_async`); always
    in autocommit, so a read is one round trip and holds no transaction open. Skipping the
    session's machinery makes such a read several times cheaper (the template's
    bench/RESULTS.md has the figures). Parameters go through their column types' bind
    processors (a UUID becomes what the database stores); rows come back as the driver gives
    them, with no type conversion: select plain columns.
    """

    def __init__(self, database: Database, statement: SelectBase) -> None:
        engine = database.engine
        compiled = statement.compile(dialect=engine.dialect)
        self._database = database
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
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def first(self, parameters: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row for these bound parameters, or None."""
        arguments = self._arguments(parameters)
        with self._database.guarded():
            if self._local is not None:
                return self._local_read(self._local, arguments)
            return self._pooled(arguments)

    async def first_async(self, parameters: Mapping[str, Any]) -> Sequence[Any] | None:
        """`first` on the event loop's own connections (`Database.open_async_reads`)."""
        reads = self._database.async_reads
        if reads is None:
            raise RuntimeError("Database.open_async_reads() was not called on this event loop.")
        return await reads.first(self.sql, self._arguments(parameters))

    def _arguments(self, parameters: Mapping[str, Any]) -> Any:
        """The DB-API arguments for these bound parameters."""
        arguments: Any = {**self._fixed, **parameters}
        for name, processor in self._processors.items():
            arguments[name] = processor(arguments[name])
        if self._positions is not None:
            arguments = [arguments[name] for name in self._positions]
        return arguments

    def _pooled(self, arguments: Any) -> tuple[Any, ...] | None:
        connection = self._engine.raw_connection()
        driver: Any = connection.driver_connection  # the DB-API driver's own: not typed
        # In autocommit, a read is one round trip: no BEGIN before it, no ROLLBACK after. The
        # connection goes back to the pool as it came (sessions need transactions).
        autocommit = getattr(driver, "autocommit", None)
        try:
            if autocommit is False:
                driver.autocommit = True
            cursor = connection.cursor()
            try:
                cursor.execute(self.sql, arguments)
                row: tuple[Any, ...] | None = cursor.fetchone()
                return row
            finally:
                cursor.close()
                if autocommit is False:
                    driver.autocommit = False
        except self._database.driver_errors:
            connection.invalidate()  # broken: the pool makes a new one instead of resetting it
            raise
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

    def _local_read(self, local: threading.local, arguments: Any) -> tuple[Any, ...] | None:
        """A read on this thread's own SQLite connection. On an event loop's thread it never
        waits for a lock (`WouldWait`); elsewhere it waits up to the statement timeout."""
        on_loop = _on_event_loop()
        try:
            row: tuple[Any, ...] | None
            row = self._own_connection(local, on_loop).execute(self.sql, arguments).fetchone()
        except self._database.driver_errors as exc:
            if on_loop and _is_locked(exc):
                raise WouldWait() from exc
            raise
        return row

    def _own_connection(self, local: threading.local, never_waits: bool) -> sqlite3.Connection:
        name = "never_waits" if never_waits else "waits"
        connection: sqlite3.Connection | None = getattr(local, name, None)
        if connection is None:
            busy = 0 if never_waits else int(self._database.limits.statement_seconds * 1000)
            dialect = self._engine.dialect
            arguments, options = dialect.create_connect_args(self._engine.url)
            options = {
                **options,
                "isolation_level": None,
                "check_same_thread": False,
                "timeout": busy / 1000,
            }
            connection = dialect.loaded_dbapi.connect(*arguments, **options)
            try:
                _sqlite_pragmas(connection, busy)
            except BaseException:
                connection.close()
                raise
            with self._lock:
                self._opened.append(connection)
            setattr(local, name, connection)
        return connection
