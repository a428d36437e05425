"""Throttling of password guessing (OWASP's Authentication cheat sheet, ASVS V2.2), shared by
every process and instance: the counters live in the database (`ThrottleCounter`).

- Each client address may make `client_per_minute` requests a minute to the sensitive routes
  (login, registration, refresh, password change and reset): `count_request`.
- Failed logins are counted per account and client address, and per account alone. After
  `free_failures` failures of one account from one address, each further one blocks that
  pair for 2, 4, 8... seconds, up to `max_backoff_seconds`; the account from every address
  the same after `account_free_failures`, a far higher count. Only a pair's free failures
  count toward the account (one address adds at most `free_failures` to it), so guessing from
  one address, however long it goes on, cannot lock the real user out elsewhere: that takes
  failures from more than `account_free_failures / free_failures` addresses. A day without failures
  forgets them; a successful login forgets its pair's (`login_succeeded`).
- Every refusal is logged as a `throttled` security event (`events`): the scope, the wait,
  the client and the user id when the caller knows it; never the account's name.

The caller checks `check_login` (one read) before it hashes anything: a refused attempt costs
no Argon2. The account is the lower-cased username as typed, known or not, so throttling
tells nothing about which accounts exist.

On SQLite and PostgreSQL every change of a counter is one statement in autocommit, so one
round trip: an upsert (`INSERT ... ON CONFLICT (key) DO UPDATE`) that computes the new count
from the stored one, atomically, however many processes count at once (a failure within the
pair's free ones takes a second, for the account, decided by the first's count). Other
databases (or a SQLite without RETURNING, before 3.35) take a short transaction that locks the
row first.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Float,
    Integer,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    literal_column,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .db import Database, ThrottleCounter
from .errors import TooManyRequests
from .events import security_event

if TYPE_CHECKING:
    from ..settings import Settings

#: The window of `count_request`.
WINDOW_SECONDS = 60
#: Failures are forgotten after this long without one.
QUIET_SECONDS = 86400
#: Longest account and client kept as they are in a key; longer ones are hashed (`_part`).
ACCOUNT_CHARS = 64
CLIENT_CHARS = 45
#: Longest back-off: a block never outlasts the failures that earned it.
MAX_BACKOFF_LIMIT = QUIET_SECONDS

_table = ThrottleCounter.__table__
_key, _hits = _table.c.key, _table.c.hits
_window_ends_at, _blocked_until = _table.c.window_ends_at, _table.c.blocked_until


class _Counter(NamedTuple):
    """A counter's row, as the changes of `Throttle._locked` read it."""

    hits: int
    window_ends_at: float
    blocked_until: float


@dataclass(frozen=True)
class ThrottleLimits:
    """How much the throttle lets through; see the module docstring."""

    client_per_minute: int = 60
    free_failures: int = 5
    account_free_failures: int = 100
    max_backoff_seconds: int = 900

    def __post_init__(self) -> None:
        for name in ("client_per_minute", "free_failures", "account_free_failures"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 1 <= self.max_backoff_seconds <= MAX_BACKOFF_LIMIT:
            raise ValueError(f"max_backoff_seconds must be between 1 and {MAX_BACKOFF_LIMIT}")

    @classmethod
    def from_settings(cls, settings: Settings) -> ThrottleLimits:
        """The limits the `THROTTLE_*` settings give."""
        return cls(
            client_per_minute=settings.throttle_client_per_minute,
            free_failures=settings.throttle_free_failures,
            account_free_failures=settings.throttle_account_free_failures,
            max_backoff_seconds=settings.throttle_max_backoff_seconds,
        )

    def backoff(self, excess: int) -> int:
        """Seconds a key is blocked for its `excess`-th failure beyond the free ones (0: none)."""
        if excess <= 0:
            return 0
        return min(1 << min(excess, 30), self.max_backoff_seconds)

    @property
    def backoff_cap_exponent(self) -> int:
        """The least n with 2^n at least `max_backoff_seconds`: from there the cap applies."""
        return (self.max_backoff_seconds - 1).bit_length()


class Throttle:
    """Counts requests and failed logins in the database and refuses the excess with
    `TooManyRequests`; `clock` gives epoch seconds."""

    def __init__(
        self, database: Database, limits: ThrottleLimits, clock: Callable[[], float] = time.time
    ) -> None:
        self.limits = limits
        self._database = database
        self._clock = clock
        # One statement needs no transaction: autocommit saves the BEGIN and COMMIT.
        self._autocommit = database.engine.execution_options(isolation_level="AUTOCOMMIT")
        dialect = database.engine.dialect
        #: Whether changes are single upserts (else a transaction that locks the row first).
        self._upsert = dialect.name in {"sqlite", "postgresql"} and dialect.insert_returning
        module: Any = sqlite if dialect.name == "sqlite" else postgresql
        self._count = self._count_statement(module)
        self._fail = self._fail_statement(module)
        self._blocked = database.prepare(
            select(func.max(_blocked_until)).where(
                _key.in_([bindparam("pair"), bindparam("account")])
            )
        )

    def count_request(self, client: str) -> None:
        """Count one request of `client` (`clients.client_address`) to a sensitive route;
        raise `TooManyRequests` if it is over the limit of its one-minute window."""
        now = self._clock()
        key = f"client:{_client_part(client)}"
        if self._upsert:
            with self._database.guarded(), self._autocommit.connect() as connection:
                hits, window_ends_at = connection.execute(
                    self._count, {"key": key, "now": now, "ends": now + WINDOW_SECONDS}
                ).one()
        else:
            hits, window_ends_at, _ = self._locked([(key, lambda row: _next_request(row, now))])[0]
        if hits > self.limits.client_per_minute:
            wait = _seconds_until(window_ends_at, now)
            security_event("throttled", scope="client", retry_after=wait, client=client)
            raise TooManyRequests(
                f"Too many requests from this address; try again in {wait} seconds.",
                retry_after=wait,
            )

    def check_login(self, account: str, client: str, user_id: object = None) -> None:
        """Raise `TooManyRequests` if `account` may not log in from `client` now: that pair,
        or the account from everywhere, is in back-off. One read; call it before hashing.
        `user_id`, when the caller knows it, goes into the security event."""
        now = self._clock()
        pair, whole = _keys(account, client)
        row = self._blocked.first({"pair": pair, "account": whole})
        blocked_until = row[0] if row is not None and row[0] is not None else 0.0
        if blocked_until > now:
            wait = _seconds_until(blocked_until, now)
            security_event(
                "throttled", scope="login", retry_after=wait, user_id=user_id, client=client
            )
            raise TooManyRequests(
                f"Too many failed logins for this username; try again in {wait} seconds.",
                retry_after=wait,
            )

    def login_failed(self, account: str, client: str) -> None:
        """Count a failed login of `account` from `client`: for the pair, and for the account
        while the pair is within its free failures."""
        now = self._clock()
        pair, whole = _keys(account, client)
        limits = self.limits
        if not self._upsert:
            [(hits, _, _)] = self._locked(
                [(pair, lambda row: _next_failure(row, now, limits.free_failures, limits))]
            )
            if hits <= limits.free_failures:
                free = limits.account_free_failures
                self._locked([(whole, lambda row: _next_failure(row, now, free, limits))])
            return
        parameters = {"now": now, "ends": now + QUIET_SECONDS}
        with self._database.guarded(), self._autocommit.connect() as connection:
            hits = connection.execute(
                self._fail, {"key": pair, "free": limits.free_failures, **parameters}
            ).scalar_one()
            if hits <= limits.free_failures:
                free = limits.account_free_failures
                connection.execute(self._fail, {"key": whole, "free": free, **parameters})

    def login_succeeded(self, account: str, client: str) -> None:
        """Forget the failures of `account` from `client` (not those of the account alone)."""
        pair, _ = _keys(account, client)
        with self._database.guarded(), self._autocommit.connect() as connection:
            connection.execute(delete(ThrottleCounter).where(_key == pair))

    def delete_expired(self, now: float) -> int:
        """Delete the counters whose window and block have both ended by `now`; return how
        many. No deadline (`Database.maintenance`): a large backlog may take a while."""
        with self._database.maintenance() as connection:
            return connection.execute(
                delete(ThrottleCounter).where(_window_ends_at <= now, _blocked_until <= now)
            ).rowcount

    def _count_statement(self, module: Any) -> Any:
        """`count_request`'s upsert: the window's count plus one, or 1 in a new window;
        returns the count and when the window ends."""
        now, ends = bindparam("now", type_=Float), bindparam("ends", type_=Float)
        ended = _window_ends_at <= now
        statement = module.insert(ThrottleCounter).values(
            key=bindparam("key"), hits=1, window_ends_at=ends, blocked_until=0.0
        )
        return statement.on_conflict_do_update(
            index_elements=[_key],
            set_={
                "hits": case((ended, 1), else_=_hits + 1),
                "window_ends_at": case((ended, ends), else_=_window_ends_at),
            },
        ).returning(_hits, _window_ends_at)

    def _fail_statement(self, module: Any) -> Any:
        """`login_failed`'s upsert of one row (the pair's or the account's): the failures plus
        one (1 after a quiet day) and the block they earn beyond `free`; returns the count."""
        limits = self.limits
        now, ends = bindparam("now", type_=Float), bindparam("ends", type_=Float)
        free: BindParameter[int] = bindparam("free", type_=Integer)
        hits = case((_window_ends_at <= now, 1), else_=_hits + 1)
        excess = (hits - free).self_group()
        doubled: ColumnElement[int] = literal_column("1", Integer).op("<<", return_type=Integer)(
            excess
        )
        blocked = case(
            (excess <= 0, literal(0.0, Float)),
            (excess >= limits.backoff_cap_exponent, now + limits.max_backoff_seconds),
            else_=now + doubled,
        )
        statement = module.insert(ThrottleCounter).values(
            key=bindparam("key"), hits=1, window_ends_at=ends, blocked_until=0.0
        )
        return statement.on_conflict_do_update(
            index_elements=[_key],
            set_={"hits": hits, "window_ends_at": ends, "blocked_until": blocked},
        ).returning(_hits)

    def _locked(
        self, changes: Sequence[tuple[str, Callable[[_Counter | None], tuple[int, float, float]]]]
    ) -> list[tuple[int, float, float]]:
        """Without upserts: in one transaction, for each key in turn, lock its row (a write
        first, so SQLite takes its write lock before reading), read it, and store what the
        change makes of it. Two transactions inserting one key: the loser retries."""
        for attempt in range(5):
            try:
                with self._database.session() as db:
                    return [self._change(db, key, change) for key, change in changes]
            except sa_exc.IntegrityError:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _change(
        db: Session, key: str, change: Callable[[_Counter | None], tuple[int, float, float]]
    ) -> tuple[int, float, float]:
        # Locks the row if there is one. If there is none, a row inserted meanwhile by another
        # transaction must not be read unlocked: insert, and on the conflict retry.
        lock = update(ThrottleCounter).where(_key == key).values(hits=_hits)
        row = None
        if db.connection().execute(lock).rowcount:  # the connection's result has the count
            found = db.execute(select(_hits, _window_ends_at, _blocked_until).where(_key == key))
            row = _Counter(*found.one())
        hits, window_ends_at, blocked_until = values = change(row)
        state = {"hits": hits, "window_ends_at": window_ends_at, "blocked_until": blocked_until}
        if row is None:
            db.execute(insert(ThrottleCounter).values(key=key, **state))
        else:
            db.execute(update(ThrottleCounter).where(_key == key).values(**state))
        return values


def _next_request(row: _Counter | None, now: float) -> tuple[int, float, float]:
    """`count_request`'s change, as `_count_statement` makes it."""
    if row is None or row.window_ends_at <= now:
        return 1, now + WINDOW_SECONDS, 0.0
    return row.hits + 1, row.window_ends_at, row.blocked_until


def _next_failure(
    row: _Counter | None, now: float, free: int, limits: ThrottleLimits
) -> tuple[int, float, float]:
    """`login_failed`'s change of one row, as `_fail_statement` makes it."""
    hits = 1 if row is None or row.window_ends_at <= now else row.hits + 1
    backoff = limits.backoff(hits - free)
    return hits, now + QUIET_SECONDS, now + backoff if backoff else 0.0


def _seconds_until(moment: float, now: float) -> int:
    """Whole seconds from `now` to `moment`, at least 1 (a `Retry-After`)."""
    return max(1, math.ceil(moment - now))


def _keys(account: str, client: str) -> tuple[str, str]:
    """The keys of an account from a client, and of the account alone."""
    name = _part(account, ACCOUNT_CHARS)
    return f"pair:{_client_part(client)}|{name}", f"account:{name}"


def _client_part(client: str) -> str:
    """A client as it appears in a key: never holds `|`, the pair key's separator."""
    return _part(client, CLIENT_CHARS) if "|" not in client else _hashed(client)


def _part(text: str, limit: int) -> str:
    """`text` if it is short and printable, else `#` and its SHA-256 (65 characters, longer
    than any text kept as is, so the two never meet): keys stay within their column's 200
    characters and hold nothing a database may refuse (NUL, lone surrogates)."""
    return text if len(text) <= limit and text.isprintable() else _hashed(text)


def _hashed(text: str) -> str:
    return "#" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
