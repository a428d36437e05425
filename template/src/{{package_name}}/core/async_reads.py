"""The authenticated path's reads on the event loop, with psycopg's async driver (PostgreSQL).

FastAPI serves `/users/me` (and the revocation check while the live set is not known, see
`revocations`) with one read by primary key. Handed to a thread, that read costs more CPU in
the hand-off and the GIL traffic than in the query, and under load it competes with the event
loop for the CPU. These connections let the loop wait for the answer itself.

Why a pool of our own and not a library's (measured with 32 concurrent reads on this
template's machine, CPU per read): a thread hand-off to SQLAlchemy's pool took 170-240 us,
SQLAlchemy's asyncio engine 300-400 us, psycopg_pool's `AsyncConnectionPool` 125-135 us and
this pool 70-80 us. psycopg_pool also makes a request wait its whole timeout when the database
is down (it retries connecting in the background), where this pool, like the sync one, fails
at once.

The deadlines are the sync path's (`DatabaseLimits`): a connect timeout, PostgreSQL's own
statement timeout, and a deadline for the whole read. When a read outlives it (a peer that
never answers), its socket is shut: the read fails at once, and the connection is dropped. The
errors are the sync path's too: `ServiceUnavailable` (503) when the database cannot answer,
logged once per outage by the database's `Health`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from .availability import shut
from .db import SERVER_PROCESS, session_setting
from .errors import ValidationFailed

if TYPE_CHECKING:
    from .db import Database

#: Connections older than this are closed instead of reused (as the sync pool's `pool_recycle`).
RECYCLE_SECONDS = 1800.0


class AsyncReads:
    """Up to `limits.pool_size` autocommit connections of psycopg's async driver, opened when
    needed and kept for the next read. Use it from one event loop (the app's lifespan opens and
    closes it)."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._limits = database.limits
        engine = database.engine
        arguments, options = engine.dialect.create_connect_args(engine.url)
        # SQLAlchemy's own psycopg options (its adapters, the URL's query) and the sync pool's
        # timeouts: the same connections, but async and in autocommit (one round trip a read).
        self._connect_arguments = arguments
        self._connect_options = {**options, **database.connect_options, "autocommit": True}
        self._slots = asyncio.Semaphore(self._limits.pool_size)
        self._idle: list[tuple[float, psycopg.AsyncConnection[Any]]] = []

    async def first(self, sql: str, arguments: Any) -> Sequence[Any] | None:
        """The first row of `sql` for these DB-API arguments, or None."""
        health = self._database.health
        if self._slots.locked():  # every connection busy: wait as long as the sync pool does
            try:
                async with asyncio.timeout(self._limits.statement_seconds):
                    await self._slots.acquire()
            except TimeoutError as exc:
                raise health.failed(exc) from exc
        else:
            await self._slots.acquire()
        try:
            row = await self._read(sql, arguments)
        except psycopg.DataError as exc:
            raise ValidationFailed("The request holds a value that cannot be stored.") from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise health.failed(exc) from exc
        finally:
            self._slots.release()
        health.succeeded()
        return row

    async def _read(self, sql: str, arguments: Any) -> Sequence[Any] | None:
        started = time.monotonic()
        opened, connection = self._idle.pop() if self._idle else (started, None)
        deadline: asyncio.TimerHandle | None = None
        try:
            new = connection is None
            if connection is None:  # bounded by the connect timeout
                connection = await psycopg.AsyncConnection.connect(
                    *self._connect_arguments, **self._connect_options
                )
            remaining = self._limits.operation_seconds - (time.monotonic() - started)
            deadline = asyncio.get_running_loop().call_later(remaining, shut, connection)
            if new:
                server_process = await (await connection.execute(SERVER_PROCESS)).fetchone()
                seconds = self._limits.statement_seconds
                if (setting := session_setting(connection, server_process, seconds)) is not None:
                    await connection.execute(setting)
            cursor = await connection.execute(sql, arguments)
            row: Sequence[Any] | None = await cursor.fetchone()
        except BaseException:
            if connection is not None:
                await connection.close()  # in an unknown state: a new one next time
            raise
        finally:
            if deadline is not None:
                deadline.cancel()
        if time.monotonic() - opened < RECYCLE_SECONDS:
            self._idle.append((opened, connection))
        else:
            await connection.close()
        return row

    async def close(self) -> None:
        """Close the idle connections (the app's lifespan, at shutdown)."""
        idle, self._idle = self._idle, []
        for _, connection in idle:
            await connection.close()
