"""Password hashing with Argon2id, and the dummy hash that hides which users exist."""

from __future__ import annotations

import functools
import secrets
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


class PasswordHasher:
    """Hashes and verifies passwords; `verify_unknown_user` spends the same time as a real check."""

    def __init__(self, parameters: Argon2Parameters) -> None:
        self._hash = _password_hash(parameters)
        self._dummy_hash = _dummy_hash(parameters)

    def hash(self, password: str) -> str:
        """Return the Argon2id hash of `password`."""
        return self._hash.hash(password)

    def verify(self, password: str, password_hash: str) -> bool:
        """Return whether `password` matches `password_hash`."""
        return self._hash.verify(password, password_hash)

    def verify_unknown_user(self, password: str) -> bool:
        """Burn one real verification against a dummy hash; always False."""
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
