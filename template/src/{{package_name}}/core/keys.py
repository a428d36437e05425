"""Key material: generate, parse and check keys, name them by `kid`, publish them as a JWK Set.

Keys are parsed once, when the app starts, into key objects; nothing here runs per request.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

from .errors import ConfigError

#: Minimum HMAC secret length per algorithm: the hash output size (RFC 7518 section 3.2).
HMAC_SECRET_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
SUPPORTED_ALGORITHMS = (*HMAC_SECRET_BYTES, *RSA_ALGORITHMS, *EC_CURVES, "EdDSA")

RSA_MIN_BITS = 2048
RSA_GENERATED_BITS = 3072

#: Fragments that mark a value copied from an example file instead of generated.
PLACEHOLDER_MARKERS = ("change-me", "changeme", "replace-me", "placeholder", "your-secret")

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)


def is_hmac(algorithm: str) -> bool:
    """Return whether `algorithm` signs with a shared secret rather than a key pair."""
    return algorithm in HMAC_SECRET_BYTES


@dataclass(frozen=True)
class Key:
    """One key, parsed: what signs with it (None when verify-only) and what verifies with it."""

    kid: str
    verifying_key: Any
    signing_key: Any = None
    public_jwk: Mapping[str, str] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class KeySet:
    """The key that signs new tokens and every key whose tokens are still accepted, by `kid`."""

    algorithm: str
    current: Key
    trusted: Mapping[str, Key]

    @property
    def kid(self) -> str:
        """The `kid` new tokens carry."""
        return self.current.kid

    @property
    def signing_key(self) -> Any:
        """The key object (or HMAC secret) new tokens are signed with."""
        return self.current.signing_key

    def verification_key(self, kid: object) -> Any | None:
        """Return the configured key for `kid`, or None when the service has no such key."""
        if not isinstance(kid, str):
            return None
        key = self.trusted.get(kid)
        return key.verifying_key if key else None

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public keys as an RFC 7517 JWK Set; empty for HMAC, which has none to publish."""
        return {"keys": [dict(key.public_jwk) for key in self.trusted.values() if key.public_jwk]}


def secret_problem(algorithm: str, secret: str) -> str | None:
    """Say what is wrong with an HMAC secret for `algorithm`, or return None when it is fine."""
    if any(marker in secret.lower() for marker in PLACEHOLDER_MARKERS):
        return "is a placeholder from an example file"
    needed = HMAC_SECRET_BYTES[algorithm]
    if len(secret.encode()) < needed:
        return f"must be at least {needed} bytes for {algorithm} (RFC 7518 section 3.2)"
    return None


def generate_key_material(algorithm: str) -> str:
    """Return new key material as text: a random secret (HMAC) or a PKCS#8 private key PEM."""
    if is_hmac(algorithm):
        return secrets.token_urlsafe(HMAC_SECRET_BYTES[algorithm] * 2)
    if algorithm in EC_CURVES:
        private_key: Any = ec.generate_private_key(EC_CURVES[algorithm]())
    elif algorithm == "EdDSA":
        private_key = ed25519.Ed25519PrivateKey.generate()
    else:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_GENERATED_BITS)
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def jwk_thumbprint(jwk: Mapping[str, str]) -> str:
    """Return the RFC 7638 SHA-256 thumbprint of a JWK, base64url-encoded without padding."""
    required = {"oct": ("k", "kty"), "RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}
    members = required.get(jwk["kty"], ("crv", "kty", "x"))
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def load_key(algorithm: str, material: str, *, verify_only: bool = False) -> Key:
    """Parse and check key material for `algorithm`; raise `ConfigError` saying what is wrong.

    A verify-only key may be a public key PEM; a signing key must be the private key.
    """
    if is_hmac(algorithm):
        problem = secret_problem(algorithm, material)
        if problem:
            raise ConfigError(problem)
        secret = material.encode()
        kid = jwk_thumbprint({"kty": "oct", "k": _b64(secret)})
        return Key(kid=kid, verifying_key=secret, signing_key=None if verify_only else secret)
    private_key, public_key = _parse_pem(material, verify_only)
    _check_key_type(algorithm, public_key)
    jwk = get_default_algorithms()[algorithm].to_jwk(public_key, as_dict=True)
    kid = jwk_thumbprint(jwk)
    public_jwk = {**jwk, "kid": kid, "alg": algorithm, "use": "sig"}
    signing_key = None if verify_only else private_key
    return Key(kid=kid, verifying_key=public_key, signing_key=signing_key, public_jwk=public_jwk)


def split_key_list(algorithm: str, text: str) -> list[str]:
    """Split a list of keys: PEM blocks for key pairs, comma-separated secrets for HMAC."""
    if is_hmac(algorithm):
        return [part.strip() for part in text.split(",") if part.strip()]
    if _PEM_BLOCK.sub("", text).strip():
        raise ConfigError("holds text that is not a PEM block (-----BEGIN ...-----)")
    return [match.group(0) for match in _PEM_BLOCK.finditer(text)]


def build_keyset(algorithm: str, current: Key, others: list[Key]) -> KeySet:
    """Assemble a key set; the current key must be able to sign."""
    if current.signing_key is None:
        raise ConfigError("the current key cannot sign")
    trusted = {key.kid: key for key in [current, *others]}
    return KeySet(algorithm=algorithm, current=current, trusted=trusted)


@functools.lru_cache(maxsize=32)
def _parse_pem(material: str, verify_only: bool) -> tuple[Any, Any]:
    """Parse a PEM key once per process: RSA parsing (with its validity checks) costs ~40 ms.

    Key objects are immutable; errors are not cached, so a bad key is reported every time.
    """
    data = material.strip().encode()
    try:
        private_key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise ConfigError("is an encrypted private key; give it without a passphrase") from exc
    except ValueError:
        if not verify_only:
            raise ConfigError("is not a PEM private key (-----BEGIN PRIVATE KEY-----)") from None
        try:
            return None, serialization.load_pem_public_key(data)
        except ValueError:
            raise ConfigError("is not a PEM public or private key") from None
    return private_key, private_key.public_key()


def _check_key_type(algorithm: str, public_key: Any) -> None:
    if algorithm in RSA_ALGORITHMS:
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise ConfigError(f"is not an RSA key, which {algorithm} needs")
        if public_key.key_size < RSA_MIN_BITS:
            bits = public_key.key_size
            raise ConfigError(f"is a {bits}-bit RSA key; {algorithm} needs at least {RSA_MIN_BITS}")
    elif algorithm in EC_CURVES:
        curve = EC_CURVES[algorithm].name
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name != curve:
            raise ConfigError(f"is not an EC key on curve {curve}, which {algorithm} needs")
    elif not isinstance(public_key, ed25519.Ed25519PublicKey):
        raise ConfigError("is not an Ed25519 key, which EdDSA needs")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
