"""Password hashing with Argon2id, and the dummy hash that hides which users exist."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher


@dataclass(frozen=True)
class Argon2Parameters:
    """Argon2id cost settings; the defaults are OWASP's minimum (19 MiB, 2 passes, 1 lane)."""

    time_cost: int = 2
    memory_kib: int = 19456
    parallelism: int = 1


class PasswordHasher:
    """Hashes and verifies passwords; `verify_unknown_user` spends the same time as a real check."""

    def __init__(self, parameters: Argon2Parameters) -> None:
        self._hash = PasswordHash(
            (
                Argon2Hasher(
                    time_cost=parameters.time_cost,
                    memory_cost=parameters.memory_kib,
                    parallelism=parameters.parallelism,
                ),
            )
        )
        self._dummy_hash = self._hash.hash(secrets.token_urlsafe(32))

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
