"""Key material: checks, key ids and the set of keys a service signs and verifies with.

Keys are prepared once, when the app starts; nothing here runs per request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Minimum HMAC secret length per algorithm: the hash output size (RFC 7518 section 3.2).
HMAC_SECRET_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}

SUPPORTED_ALGORITHMS = tuple(HMAC_SECRET_BYTES)

#: Fragments that mark a value copied from an example file instead of generated.
PLACEHOLDER_MARKERS = ("change-me", "changeme", "replace-me", "placeholder", "your-secret")


class KeyConfigError(Exception):
    """Raised when configured key material is missing or unsafe."""


@dataclass(frozen=True)
class KeySet:
    """The key that signs new tokens and every key whose tokens are still accepted, by `kid`."""

    algorithm: str
    kid: str
    signing_key: Any
    verification_keys: Mapping[str, Any]

    def verification_key(self, kid: object) -> Any | None:
        """Return the configured key for `kid`, or None when the service has no such key."""
        if not isinstance(kid, str):
            return None
        return self.verification_keys.get(kid)


def hmac_secret_problem(algorithm: str, secret: str) -> str | None:
    """Say what is wrong with an HMAC secret for `algorithm`, or return None when it is fine."""
    lowered = secret.lower()
    if any(marker in lowered for marker in PLACEHOLDER_MARKERS):
        return "is a placeholder from an example file"
    needed = HMAC_SECRET_BYTES[algorithm]
    if len(secret.encode()) < needed:
        return f"must be at least {needed} bytes for {algorithm} (RFC 7518 section 3.2)"
    return None


def generate_hmac_secret(algorithm: str) -> str:
    """Return a new random secret with twice the entropy the algorithm needs."""
    return secrets.token_urlsafe(HMAC_SECRET_BYTES[algorithm] * 2)


def jwk_thumbprint(jwk: Mapping[str, str]) -> str:
    """Return the RFC 7638 SHA-256 thumbprint of a JWK, base64url-encoded without padding."""
    required = {"oct": ("k", "kty"), "RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}
    members = required.get(jwk["kty"], ("crv", "kty", "x"))
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def hmac_keyset(algorithm: str, secret: str) -> KeySet:
    """Build the key set for an HMAC algorithm from its secret, refusing unsafe secrets."""
    if algorithm not in HMAC_SECRET_BYTES:
        raise KeyConfigError(f"{algorithm} is not an HMAC algorithm")
    problem = hmac_secret_problem(algorithm, secret)
    if problem:
        raise KeyConfigError(f"the signing secret {problem}")
    key = secret.encode()
    encoded = base64.urlsafe_b64encode(key).rstrip(b"=").decode()
    kid = jwk_thumbprint({"kty": "oct", "k": encoded})
    return KeySet(algorithm=algorithm, kid=kid, signing_key=key, verification_keys={kid: key})
