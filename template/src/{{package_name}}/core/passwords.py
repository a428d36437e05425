"""Password hashing with Argon2id, and the dummy hash that hides which users exist."""

from __future__ import annotations

import functools
import os
import secrets
import threading
from dataclasses import dataclass

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher


@dataclass(frozen=True)
class Argon2Parameters:
    """Argon2id cost settings."""

    time_cost: int
    memory_kib: int
    parallelism: int


#: OWASP's minimum for Argon2id (Password Storage Cheat Sheet): 19 MiB, 2 passes, 1 lane.
OWASP_ARGON2 = Argon2Parameters(time_cost=2, memory_kib=19456, parallelism=1)


def default_max_concurrent() -> int:
    """All cores but one: logins never take the core that answers every other request."""
    return max(1, (os.cpu_count() or 2) - 1)


class PasswordHasher:
    """Hashes and verifies passwords; `verify_unknown_user` spends the same time as a real check.

    At most `max_concurrent` hashes run at once in a process; more wait for a slot. Each hash
    takes a core and `memory_kib` of memory for its whole run, so a burst of logins can neither
    starve the other requests of CPU nor make the process run out of memory.
    """

    def __init__(self, parameters: Argon2Parameters, max_concurrent: int = 1) -> None:
        self._hash = _password_hash(parameters)
        self._dummy_hash = _dummy_hash(parameters)
        #: The slots; a hash holds one while it runs.
        self.slots = threading.BoundedSemaphore(max_concurrent)

    def hash(self, password: str) -> str:
        """Return the Argon2id hash of `password`."""
        with self.slots:
            return self._hash.hash(password)

    def verify(self, password: str, password_hash: str) -> bool:
        """Return whether `password` matches `password_hash`."""
        with self.slots:
            return self._hash.verify(password, password_hash)

    def verify_unknown_user(self, password: str) -> bool:
        """Burn one real verification against a dummy hash; always False."""
        with self.slots:
            self._hash.verify(password, self._dummy_hash)
        return False


def _password_hash(parameters: Argon2Parameters) -> PasswordHash:
    hasher = Argon2Hasher(
        time_cost=parameters.time_cost,
        memory_cost=parameters.memory_kib,
        parallelism=parameters.parallelism,
    )
    return PasswordHash((hasher,))


@functools.cache
def _dummy_hash(parameters: Argon2Parameters) -> str:
    """A hash of a random password with these parameters, made once per process at start-up."""
    return _password_hash(parameters).hash(secrets.token_urlsafe(32))
