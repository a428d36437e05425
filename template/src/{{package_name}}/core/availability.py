"""Keeping the service up when its database is not: deadlines for every database call, and
one log line per outage instead of a traceback per request.

A database that is slow is stopped by its own `statement_timeout`. One that never answers
(a hung server, a middlebox that swallows packets) is not: the driver would wait for ever. The
`Watchdog` gives each database operation a deadline and, when it passes, shuts the sockets of
the connections the operation holds, so the blocked call fails at once with a connection error
and the thread is free again; the pool then replaces those connections.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .errors import ServiceUnavailable

log = logging.getLogger(__name__)


@dataclass
class Operation:
    """One guarded database operation: its deadline and the driver connections it uses."""

    deadline: float
    connections: list[Any] = field(default_factory=list)


class Watchdog:
    """Ends database operations that outlive their deadline; one thread for all of them."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._local = threading.local()
        self._pending: list[tuple[float, int, Operation]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextmanager
    def operation(self) -> Iterator[Operation]:
        """Guard the database work of this block (nested blocks join the outer one)."""
        current = getattr(self._local, "operation", None)
        if current is not None:
            yield current
            return
        operation = Operation(time.monotonic() + self.seconds)
        self._local.operation = operation
        with self._wake:
            idle = not self._pending
            heapq.heappush(self._pending, (operation.deadline, next(self._order), operation))
            self._start()
            if idle:  # every deadline is as far away: only a sleeping watchdog needs waking
                self._wake.notify()
        try:
            yield operation
        finally:
            self._local.operation = None
            with self._wake:
                operation.connections.clear()  # done: the watchdog has nothing left to shut

    def uses(self, connection: Any) -> None:
        """Record that the current operation (if any) holds this driver connection."""
        operation = getattr(self._local, "operation", None)
        if operation is not None:
            operation.connections.append(connection)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="db-watchdog", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending:
                    self._wake.wait()
                deadline, _, operation = self._pending[0]
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                heapq.heappop(self._pending)
                for connection in operation.connections:  # still running: end it
                    shut(connection)


def shut(connection: Any) -> None:
    """Shut down the socket of a driver connection (its descriptor stays the driver's to close).

    The descriptor is asked for now, from the connection itself: one the driver has closed
    meanwhile raises instead of naming a socket that since belongs to someone else.
    """
    try:
        fileno = connection.fileno()
    except Exception:  # closed already (the driver raises its own error): nothing to shut
        return
    try:
        with socket.socket(fileno=fileno) as sock:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.detach()  # the driver closes its descriptor itself
    except OSError:
        pass  # already closed


class Health:
    """Whether the database answered last time; logs each change once, in one line."""

    def __init__(self) -> None:
        self.available = True
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> ServiceUnavailable:
        """Note a failed database call; return the error to answer the request with."""
        with self._lock:
            if self.available:
                self.available = False
                log.error("Database unavailable: %s", describe(exc))
        return ServiceUnavailable()

    def succeeded(self) -> None:
        """Note a database call that worked."""
        if not self.available:
            with self._lock:
                if not self.available:
                    self.available = True
                    log.warning("Database available again.")


def describe(exc: BaseException) -> str:
    """One line about a database error, without SQL or parameters."""
    cause = getattr(exc, "orig", None) or exc
    first_line = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first_line}"[:300]
