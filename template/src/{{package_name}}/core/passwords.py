"""Password hashing with Argon2id, and the dummy hash that hides which users exist.

Passwords are hashed and verified in Unicode NFKC form, so the same password typed on another
keyboard or input method (full-width letters, ligatures, composed or decomposed accents) still
matches. Hashes made before that, from the password as typed, still verify: when the
normalised password does not match, the password as typed is tried too, and a match asks the
caller to store a new hash (`Verified.new_hash`).

Every check spends the wall time of verifications at the current Argon2 parameters, whoever
the user: a known user whose hash has cheaper, older parameters is delayed after the check by
the difference, so raising `ARGON2_TIME_COST` or `ARGON2_MEMORY_KIB` does not make unknown
usernames (checked against a dummy hash at the new cost) stand out by their slowness. Lowering
them is different: the users whose hashes have the old, costlier parameters take longer than
an unknown user, and stay distinguishable by timing until they next log in and are rehashed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import statistics
import threading
import unicodedata
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from time import perf_counter, sleep

from pwdlib.hashers.argon2 import Argon2Hasher

from .errors import ServiceUnavailable


@dataclass(frozen=True)
class Argon2Parameters:
    """Argon2id cost settings."""

    time_cost: int
    memory_kib: int
    parallelism: int


#: OWASP's minimum for Argon2id (Password Storage Cheat Sheet): 19 MiB, 2 passes, 1 lane.
OWASP_ARGON2 = Argon2Parameters(time_cost=2, memory_kib=19456, parallelism=1)

#: The detail of the 503 a request gets when every hashing slot and waiting place is taken.
BUSY = "Too many logins are being checked at once; try again in a second."

#: The estimate of one verification's cost is the median of the last this many.
_ESTIMATE_WINDOW = 20


def default_max_concurrent() -> int:
    """All cores but one: logins never take the core that answers every other request."""
    return max(1, (os.cpu_count() or 2) - 1)


def normalise(password: str) -> str:
    """The form a password is hashed in: Unicode NFKC."""
    return unicodedata.normalize("NFKC", password)


@dataclass(frozen=True)
class Verified:
    """The outcome of a password check: whether it matched, and a hash to store instead of
    the old one (current parameters, normalised password) when the old one is outdated."""

    ok: bool
    new_hash: str | None = None

    def __bool__(self) -> bool:
        """Whether the password matched, so `if not hasher.verify(...)` reads as it should."""
        return self.ok


class PasswordHasher:
    """Hashes and verifies passwords; `verify_unknown_user` spends the same time as a real check.

    At most `max_concurrent` hashes run at once in a process; more wait for a slot. Each hash
    takes a core and `memory_kib` of memory for its whole run, so a burst of logins can neither
    starve the other requests of CPU nor make the process run out of memory. A request enters
    `admitted` (once) before it waits: beyond `max_waiting` waiting requests, more are refused
    at once with a 503 instead of queueing for ever longer.
    """

    def __init__(
        self, parameters: Argon2Parameters, max_concurrent: int = 1, max_waiting: int = 32
    ) -> None:
        if max_concurrent < 1 or max_waiting < 0:
            raise ValueError("max_concurrent must be at least 1 and max_waiting at least 0")
        self.parameters = parameters
        self._argon2 = _argon2(parameters)
        self._dummy_hash = _dummy_hash(parameters)
        #: The slots; a hash holds one while it runs.
        self.slots = threading.BoundedSemaphore(max_concurrent)
        self._capacity = max_concurrent + max_waiting
        self._admission = threading.BoundedSemaphore(self._capacity)
        # Seconds one verification at the current parameters takes, measured now and kept up
        # to date by every later one (the machine's load changes it). The median: a moment of
        # load does not make every padded check longer than a real one for a while.
        self._estimate_lock = threading.Lock()
        self._recent: deque[float] = deque(maxlen=_ESTIMATE_WINDOW)
        start = perf_counter()
        self._argon2.verify(secrets.token_urlsafe(16), self._dummy_hash)
        self._learn(perf_counter() - start)

    @property
    def capacity(self) -> int:
        """How many requests may be admitted at once: those hashing and those waiting."""
        return self._capacity

    @contextlib.contextmanager
    def admitted(self) -> Iterator[None]:
        """Admit a request that will hash or verify passwords, or raise `ServiceUnavailable`
        at once when `capacity` requests already are."""
        if not self._admission.acquire(blocking=False):
            raise ServiceUnavailable(BUSY, retry_after=1)
        try:
            yield
        finally:
            self._admission.release()

    def hash(self, password: str) -> str:
        """Return the Argon2id hash of `password`, normalised."""
        with self.slots:
            return self._argon2.hash(normalise(password))

    def verify(self, password: str, password_hash: str) -> Verified:
        """Check `password` against `password_hash`; a match may come with a new hash to store.

        A hash cheaper than the current parameters is padded to the time a current one takes.
        """
        current = self._is_current(password_hash)
        normalised = normalise(password)
        with self.slots:
            start = perf_counter()
            ok, verifications, as_typed = self._check(password, normalised, password_hash)
            elapsed = perf_counter() - start
            outdated = ok and (as_typed or not current)
            new_hash = self._argon2.hash(normalised) if outdated else None
        if current:
            self._learn(elapsed / verifications)
        else:
            self._pad(elapsed, verifications)
        return Verified(ok, new_hash)

    def verify_unknown_user(self, password: str) -> Verified:
        """Spend what checking `password` against a real user's hash spends; never a match."""
        with self.slots:
            start = perf_counter()
            _, verifications, _ = self._check(password, normalise(password), self._dummy_hash)
            elapsed = perf_counter() - start
        self._learn(elapsed / verifications)
        return Verified(False, None)

    def _check(self, password: str, normalised: str, password_hash: str) -> tuple[bool, int, bool]:
        """Whether the password matches, in how many verifications, and whether only as typed.

        The verifications depend on the password alone when it does not match, so an unknown
        user's check costs what a known user's failed one does."""
        if self._argon2.verify(normalised, password_hash):
            return True, 1, False
        if normalised == password:
            return False, 1, False
        return self._argon2.verify(password, password_hash), 2, True

    def _is_current(self, password_hash: str) -> bool:
        """Whether `password_hash` has the current parameters (malformed ones do not)."""
        try:
            return not self._argon2.check_needs_rehash(password_hash)
        except ValueError:  # argon2's InvalidHashError
            return False

    def _learn(self, seconds: float) -> None:
        """Fold one verification at the current parameters into the estimate of their cost."""
        with self._estimate_lock:
            self._recent.append(seconds)

    def _pad(self, elapsed: float, verifications: int) -> None:
        """Sleep, holding no slot, until the check has taken what it would at the current
        parameters; a check that took longer (costlier old parameters) is not padded."""
        with self._estimate_lock:
            target = verifications * statistics.median(self._recent)
        if target > elapsed:
            sleep(target - elapsed)


def _argon2(parameters: Argon2Parameters) -> Argon2Hasher:
    return Argon2Hasher(
        time_cost=parameters.time_cost,
        memory_cost=parameters.memory_kib,
        parallelism=parameters.parallelism,
    )


@functools.cache
def _dummy_hash(parameters: Argon2Parameters) -> str:
    """A hash of a random password with these parameters, made once per process at start-up."""
    return _argon2(parameters).hash(secrets.token_urlsafe(32))
