"""The live revocations, kept in each process's memory so that a protected route needs no
database round trip (PostgreSQL).

The `revocations` table stays the truth. Whoever revokes sends, in the same transaction, a
PostgreSQL notification (`NOTIFY`) that every process listens to; the process that revokes
applies it at once. A listener that (re)connects first listens, then reads every revocation
that can still matter, so nothing sent meanwhile is missed.

It fails closed: while a process is not sure its set is complete, `Revocations.known` is False
and the caller reads the database per request instead (and answers 503 if that fails too). Sure
means: loaded, and the listener's own ping came back through PostgreSQL's notification queue
within `STALE_SECONDS`. The listener sends the ping (`pg_notify` on a channel only it listens
to) every `POLL_SECONDS`; PostgreSQL delivers notifications in commit order, so a ping that
came back proves every revocation committed before it was sent has arrived. A stalled
connection delivers nothing and says nothing either; a connection pooler in transaction mode
(PgBouncer's default) accepts `LISTEN` but never delivers: in both cases the pings stop coming
back and the process reads the database per request, instead of trusting a set that silently
stopped changing.

An entry is kept only as long as an access token it covers can live: `revoked_at +
ACCESS_TOKEN_MINUTES + JWT_LEEWAY_SECONDS` (refresh tokens are always checked against the
database), so the set holds about the revocations of the last few minutes, not of the last
weeks.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, or_, select
from sqlalchemy.dialects import postgresql

from .claims import Claims
from .db import Database, Revocation, user_key

USER_PREFIX = user_key("")

log = logging.getLogger(__name__)

#: The PostgreSQL notification channel revocations are sent on.
CHANNEL = "revocations"
#: The listener connection's name, as `pg_stat_activity` shows it (with the process id after).
APPLICATION_NAME = "revocation-listener"
#: How often the listener pings itself through the notification queue (and prunes the set).
POLL_SECONDS = 0.2
#: A set whose listener's last ping came back longer ago than this is not trusted.
STALE_SECONDS = 1.0


class Revocations:
    """The live revocations by id (`jti`, session id, or `user:<id>`), with the time each may be
    forgotten; a user's entry also keeps the last second it cuts off (`db.user_key`)."""

    def __init__(
        self,
        window_seconds: int,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        #: How long after its revocation an entry can still cover an access token.
        self.window_seconds = window_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._until: dict[str, float] = {}
        self._cutoffs: dict[str, float] = {}
        self._lock = threading.Lock()
        self._loaded = False
        self._confirmed = -math.inf  # `monotonic` when the listener's last ping came back

    @property
    def known(self) -> bool:
        """Whether the set holds every live revocation now (else: read the database)."""
        return self._loaded and self._monotonic() - self._confirmed < STALE_SECONDS

    def confirm(self) -> None:
        """The listener's ping came back: every notification sent before it has arrived."""
        self._confirmed = self._monotonic()

    def forget(self) -> None:
        """The listener lost its connection: stop trusting the set until it is loaded again."""
        self._loaded = False

    def add(self, key: str, expires_at: float, revoked_at: float | None = None) -> None:
        """Remember a revocation until no access token it covers can be valid any more."""
        revoked = self._clock() if revoked_at is None else revoked_at
        until = min(expires_at, revoked + self.window_seconds)
        with self._lock:
            self._until[key] = max(until, self._until.get(key, 0))
            if key.startswith(USER_PREFIX):
                self._cutoffs[key] = max(revoked, self._cutoffs.get(key, 0))

    def covers(self, claims: Claims) -> bool:
        """Whether an access token (its claims), its session, or every token of its user up to
        its `iat`, is revoked (only meaningful while `known`)."""
        session_id = claims.get("sid")
        if claims["jti"] in self._until or (session_id is not None and session_id in self._until):
            return True
        cutoff = self._cutoffs.get(user_key(claims["sub"]))
        return cutoff is not None and claims["iat"] <= cutoff

    def cutoff(self, key: str) -> float | None:
        """The last second a user's entry (`db.user_key`) cuts off, if it is live."""
        return self._cutoffs.get(key)

    def replace(self, entries: list[tuple[str, float, float | None]]) -> None:
        """Start again from a full read of the table (the listener just connected and listens):
        trusted once this connection's first ping comes back (`confirm`)."""
        fresh = Revocations(self.window_seconds, self._clock)
        for key, expires_at, revoked_at in entries:
            fresh.add(key, expires_at, revoked_at)
        with self._lock:
            self._until, self._cutoffs = fresh._until, fresh._cutoffs
            self._confirmed = -math.inf
            self._loaded = True

    def prune(self) -> None:
        """Forget what no token can need any more (leeway included in `window_seconds`)."""
        now = self._clock()
        with self._lock:
            self._until = {key: until for key, until in self._until.items() if until > now}
            self._cutoffs = {key: c for key, c in self._cutoffs.items() if key in self._until}

    def __len__(self) -> int:
        return len(self._until)


def payload(key: str, expires_at: int, revoked_at: int) -> str:
    """A notification's text: the id and its two times."""
    return f"{key} {expires_at} {revoked_at}"


def parse(text: str) -> tuple[str, float, float] | None:
    """The id and times of a notification, or None for a text this code did not send."""
    parts = text.split()
    if len(parts) != 3:
        return None
    try:
        return parts[0], float(parts[1]), float(parts[2])
    except ValueError:
        return None


class Listener:
    """A thread that keeps `Revocations` current from PostgreSQL's notifications."""

    def __init__(self, database: Database, revocations: Revocations, conninfo: str) -> None:
        self._database = database
        self._revocations = revocations
        self._conninfo = conninfo
        self._stopped = threading.Event()
        self._heard = False  # a ping came back on the current connection
        self._thread = threading.Thread(target=self._run, name="revocation-listener", daemon=True)

    def start(self) -> Listener:
        """Begin listening in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (the set stops being known); the thread ends within `POLL_SECONDS`."""
        self._stopped.set()
        self._revocations.forget()
        self._thread.join(timeout=POLL_SECONDS + 1)

    def _run(self) -> None:
        import psycopg  # PostgreSQL only: imported where it is needed

        delay = 0.05
        while not self._stopped.is_set():
            self._heard = False
            try:
                with psycopg.connect(
                    self._conninfo,
                    autocommit=True,
                    application_name=f"{APPLICATION_NAME} {os.getpid()}",
                    connect_timeout=max(1, int(self._database.limits.connect_seconds)),
                ) as connection:
                    self._listen(connection)
            except (psycopg.Error, OSError) as exc:
                if self._revocations.known:
                    log.warning("Revocation listener lost its connection: %s", exc)
            self._revocations.forget()
            # A connection whose pings came back worked: this outage starts the backoff again.
            delay = 0.1 if self._heard else min(delay * 2, 5.0)
            self._stopped.wait(delay)

    def _listen(self, connection: Any) -> None:
        # The pings' channel: this connection's alone, so no other process hears them.
        pings = f"{CHANNEL}_{os.getpid()}_{secrets.token_hex(4)}"
        connection.execute(f"LISTEN {CHANNEL}")
        connection.execute(f"LISTEN {pings}")
        watchdog = self._database.watchdog
        with watchdog.operation():
            watchdog.uses(connection)
            self._revocations.replace(self._live_rows(connection))
        sent = 0
        while not self._stopped.is_set():
            # A stalled connection is cut by the watchdog instead of hanging here.
            sent += 1
            with watchdog.operation():
                watchdog.uses(connection)
                connection.execute("SELECT pg_notify(%s, %s)", (pings, str(sent)))
            # Notifications that arrived during a query wait in psycopg's backlog: none lost.
            for notification in connection.notifies(timeout=POLL_SECONDS, stop_after=100):
                if notification.channel != pings:
                    if (entry := parse(notification.payload)) is not None:
                        self._revocations.add(*entry)
                elif notification.payload == str(sent):  # a late one proves less: not trusted
                    self._revocations.confirm()
                    self._heard = True
            self._revocations.prune()

    def _live_rows(self, connection: Any) -> list[tuple[str, float, float | None]]:
        """Every revocation that may still cover an access token, read on the listener's own
        connection: its failures are the listener's to retry, not the service's health."""
        now = int(time.time())
        query = select(Revocation.id, Revocation.expires_at, Revocation.revoked_at).where(
            Revocation.expires_at > bindparam("now"),
            or_(Revocation.revoked_at.is_(None), Revocation.revoked_at > bindparam("since")),
        )
        # PostgreSQL's SQL as psycopg, the listener's driver, takes parameters. SQLAlchemy's
        # dialect classes leave their constructor's arguments untyped.
        dialect = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
        sql = str(query.compile(dialect=dialect))
        parameters = {"now": now, "since": now - int(self._revocations.window_seconds)}
        return [tuple(row) for row in connection.execute(sql, parameters)]
