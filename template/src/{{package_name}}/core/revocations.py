"""The live revocations, kept in each process's memory so that a protected route needs no
database round trip (PostgreSQL).

The `revocations` table stays the truth. Whoever revokes sends, in the same transaction, a
PostgreSQL notification (`NOTIFY`) that every process listens to; the process that revokes
applies it at once. A listener that (re)connects first listens, then reads every revocation
that can still matter, so nothing sent meanwhile is missed.

It fails closed: while a process is not sure its set is complete, `Revocations.known` is False
and the caller reads the database per request instead (and answers 503 if that fails too). Sure
means: loaded, and the listener's own ping, sent less than `STALE_SECONDS` ago, came back
through PostgreSQL's notification queue. The listener sends the ping (`pg_notify` on a channel
only it listens to) every `POLL_SECONDS`; PostgreSQL delivers notifications in commit order, so
a ping that came back proves every revocation committed before it was sent has arrived. A
stalled connection delivers nothing and says nothing either: its pings stop coming back, and
within `STALE_SECONDS` the process reads the database per request. Behind a connection pooler
(PgBouncer), a notification reaches the listener only while the pooler happens to lend it the
server connection that listens, so pings can come back while revocations are lost: the listener
recognises a pooler (the process id the connection was told at its start is the pooler's) and
never trusts its set there. `DATABASE_LISTEN_URL` gives it a direct connection instead.

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
from .db import SERVER_PROCESS, Database, Revocation, pooled, user_key

USER_PREFIX = user_key("")

log = logging.getLogger(__name__)

#: The PostgreSQL notification channel revocations are sent on.
CHANNEL = "revocations"
#: The listener connection's name, as `pg_stat_activity` shows it (with the process id after).
APPLICATION_NAME = "revocation-listener"
#: How often the listener pings itself through the notification queue (and prunes the set).
POLL_SECONDS = 0.2
#: A set whose listener's last returned ping was sent longer ago than this is not trusted.
STALE_SECONDS = 1.0
#: A listener connection that worked this long starts the reconnect backoff again when lost.
RESET_BACKOFF_SECONDS = 10.0


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

    def confirm(self, sent_at: float | None = None) -> None:
        """The listener's ping, sent at `sent_at` (`monotonic`; default now), came back: every
        notification committed before then has arrived."""
        self._confirmed = self._monotonic() if sent_at is None else sent_at

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


class Backoff:
    """How long the listener waits before it connects again: 0.1 s, doubled after each lost
    connection up to 5 s, so that a database that keeps dropping it soon after connecting is
    tried less and less often; after a connection that worked `RESET_BACKOFF_SECONDS`, 0.1 s
    again (an outage after a working while is not one of a series)."""

    def __init__(self) -> None:
        self._next = 0.1

    def after(self, worked_seconds: float) -> float:
        """The wait after a connection that worked for `worked_seconds` (0: it never did)."""
        if worked_seconds > RESET_BACKOFF_SECONDS:
            self._next = 0.1
        delay, self._next = self._next, min(self._next * 2, 5.0)
        return delay


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
        """Stop listening (the set stops being known); the thread ends within `POLL_SECONDS`,
        or within the database's operation deadline if a query is under way."""
        self._stopped.set()
        self._revocations.forget()
        self._thread.join(timeout=POLL_SECONDS + 1)

    def _run(self) -> None:
        import psycopg  # PostgreSQL only: imported where it is needed

        limits = self._database.limits
        options = {
            "connect_timeout": max(1, int(limits.connect_seconds)),
            **self._database.connect_options,  # the pool's: TCP timeouts and keepalives too
            "autocommit": True,
            "application_name": f"{APPLICATION_NAME} {os.getpid()}",
        }
        backoff = Backoff()
        while not self._stopped.is_set():
            self._heard = False
            connected = time.monotonic()
            try:
                with psycopg.connect(self._conninfo, **options) as connection:
                    if not self._listen(connection):
                        log.warning(POOLED_WARNING)
                        return  # the set is never known: every request reads the database
            except (psycopg.Error, OSError) as exc:
                if self._heard:
                    log.warning("Revocation listener lost its connection: %s", exc)
            self._revocations.forget()
            self._stopped.wait(backoff.after(time.monotonic() - connected if self._heard else 0))

    def _listen(self, connection: Any) -> bool:
        """Keep the set current from `connection` until stopped (True) or an error; False at
        once if the connection goes through a pooler."""
        # The pings' channel: this connection's alone, so no other process hears them.
        pings = f"{CHANNEL}_{os.getpid()}_{secrets.token_hex(4)}"
        watchdog = self._database.watchdog
        with watchdog.operation():  # a stalled connection is cut instead of hanging here
            watchdog.uses(connection)
            if pooled(connection, connection.execute(SERVER_PROCESS).fetchone()):
                return False
            connection.execute(f"LISTEN {CHANNEL}")
            connection.execute(f"LISTEN {pings}")
            self._revocations.replace(self._live_rows(connection))
        listening, sent, warned = time.monotonic(), 0, False
        while not self._stopped.is_set():
            sent += 1
            sent_at = time.monotonic()
            with watchdog.operation():
                watchdog.uses(connection)
                connection.execute("SELECT pg_notify(%s, %s)", (pings, str(sent)))
            # Notifications that arrived during a query wait in psycopg's backlog: none lost.
            for notification in connection.notifies(timeout=POLL_SECONDS, stop_after=100):
                if notification.channel != pings:
                    if (entry := parse(notification.payload)) is not None:
                        self._revocations.add(*entry)
                elif notification.payload == str(sent):  # a late one proves less: not trusted
                    self._revocations.confirm(sent_at)
                    self._heard = True
            if not (self._heard or warned) and time.monotonic() - listening > STALE_SECONDS:
                log.warning(
                    "Revocation listener: its own notifications do not come back;"
                    " revocations are read from the database per request."
                )
                warned = True
            self._revocations.prune()
        return True

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


POOLED_WARNING = (
    "Revocation listener: its connection goes through a connection pooler, which delivers a"
    " notification only while it happens to lend this client the server connection that"
    " listens. Revocations are read from the database per request instead of kept in memory;"
    " set DATABASE_LISTEN_URL to a direct connection to PostgreSQL to keep them in memory."
)
