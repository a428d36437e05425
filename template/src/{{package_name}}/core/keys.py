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
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeAlias

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from jwt import algorithms as jws

from .errors import ConfigError


class Algorithm(StrEnum):
    """The signing algorithms a service can use (`JWT_ALGORITHM`); the value is the `alg`."""

    HS256 = "HS256"
    HS384 = "HS384"
    HS512 = "HS512"
    RS256 = "RS256"
    RS384 = "RS384"
    RS512 = "RS512"
    PS256 = "PS256"
    PS384 = "PS384"
    PS512 = "PS512"
    ES256 = "ES256"
    ES384 = "ES384"
    ES512 = "ES512"
    #: RFC 9864's fully-specified name for Ed25519 signatures.
    ED25519 = "Ed25519"
    #: The older, polymorphic name that RFC 9864 deprecates: the same signature, same keys.
    EDDSA = "EdDSA"


SUPPORTED_ALGORITHMS = tuple(Algorithm)
#: Minimum HMAC secret length per algorithm: the hash output size (RFC 7518 section 3.2).
HMAC_SECRET_BYTES: dict[str, int] = {Algorithm.HS256: 32, Algorithm.HS384: 48, Algorithm.HS512: 64}
RSA_ALGORITHMS: tuple[str, ...] = (
    *(Algorithm.RS256, Algorithm.RS384, Algorithm.RS512),
    *(Algorithm.PS256, Algorithm.PS384, Algorithm.PS512),
)
EC_CURVES: dict[str, ec.EllipticCurve] = {
    Algorithm.ES256: ec.SECP256R1(),
    Algorithm.ES384: ec.SECP384R1(),
    Algorithm.ES512: ec.SECP521R1(),
}
ED25519_ALGORITHMS: tuple[str, ...] = (Algorithm.ED25519, Algorithm.EDDSA)

#: What signs tokens: a key pair's private key (PyJWT's type), or an HMAC secret's bytes.
SigningKey: TypeAlias = jws.AllowedPrivateKeys | bytes
#: What verifies them: a key pair's public key (PyJWT's type), or the HMAC secret's bytes.
VerifyingKey: TypeAlias = jws.AllowedPublicKeys | bytes

#: Names PyJWT does not know yet (2.15 predates RFC 9864), and the implementation of each.
EXTRA_ALGORITHMS: dict[str, Callable[[], jws.Algorithm]] = {Algorithm.ED25519: jws.OKPAlgorithm}

RSA_MIN_BITS = 2048
RSA_GENERATED_BITS = 3072

#: Fragments that mark a value copied from an example file instead of generated.
PLACEHOLDER_MARKERS = ("change-me", "changeme", "replace-me", "placeholder", "your-secret")

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)


def is_hmac(algorithm: str) -> bool:
    """Return whether `algorithm` signs with a shared secret rather than a key pair."""
    return algorithm in HMAC_SECRET_BYTES


def key_type(algorithm: str) -> str:
    """What kind of key `algorithm` signs with; algorithms of one kind can share a key ring."""
    return "Ed25519" if algorithm in ED25519_ALGORITHMS else algorithm


def accepted_algorithms(algorithm: str) -> list[str]:
    """The `alg` values a token of this service may carry: the configured algorithm, and for
    Ed25519 and EdDSA both names of the very same signature, so that a switch from one to the
    other works one instance at a time and tokens issued before it keep working. The key
    decides (both names verify only with the service's Ed25519 keys), so nothing else can be
    substituted."""
    if algorithm in ED25519_ALGORITHMS:
        return [*ED25519_ALGORITHMS]
    return [algorithm]


def algorithm_object(algorithm: str) -> jws.Algorithm:
    """PyJWT's implementation of `algorithm`, including the names it does not ship yet."""
    extra = EXTRA_ALGORITHMS.get(algorithm)
    return extra() if extra is not None else jws.get_default_algorithms()[algorithm]


@dataclass(frozen=True)
class Key:
    """One key, parsed: what signs with it (None when verify-only) and what verifies with it.

    `trusted_until` (a Unix time) ends a retiring key's trust without a restart; None: no end.
    """

    kid: str
    verifying_key: VerifyingKey
    signing_key: SigningKey | None = None
    public_jwk: Mapping[str, str] | None = field(default=None, repr=False)
    trusted_until: float | None = None

    def trusted_at(self, now: float) -> bool:
        """Whether tokens signed with this key are accepted at `now`."""
        return self.trusted_until is None or now < self.trusted_until


@dataclass(frozen=True)
class KeySet:
    """The key that signs new tokens and every key whose tokens are still accepted, by `kid`.

    A key set is its own key source (`current()`); a key ring that can change while the
    service runs is another (see `keyring.RingKeys`).
    """

    algorithm: str
    current_key: Key
    trusted: Mapping[str, Key]
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    def current(self) -> KeySet:
        """This key set: it never changes."""
        return self

    @property
    def kid(self) -> str:
        """The `kid` new tokens carry."""
        return self.current_key.kid

    @property
    def signing_key(self) -> SigningKey:
        """The key object (or HMAC secret) new tokens are signed with."""
        key = self.current_key.signing_key
        if key is None:  # `build_keyset` refuses such a set
            raise ConfigError("the current key cannot sign")
        return key

    def verification_key(self, kid: object) -> VerifyingKey | None:
        """Return the trusted key for `kid`, or None when the service has no such key now."""
        if not isinstance(kid, str):
            return None
        key = self.trusted.get(kid)
        return key.verifying_key if key is not None and key.trusted_at(self.clock()) else None

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public keys trusted now, as an RFC 7517 JWK Set; empty for HMAC."""
        now = self.clock()
        return {
            "keys": [
                dict(key.public_jwk)
                for key in self.trusted.values()
                if key.public_jwk and key.trusted_at(now)
            ]
        }


#: What zlib adds to any input: header, checksum, block headers.
_ZLIB_OVERHEAD = 11


def secret_problem(algorithm: str, secret: str) -> str | None:
    """Say what is wrong with an HMAC secret for `algorithm`, or return None when it is fine.

    Besides its length, a secret must carry about as much randomness as the hash's output:
    text that compresses below that size (`aaaa...`, a repeated pattern, a passphrase of
    words) is refused. What `keys generate` or `openssl rand -base64 48` prints passes.
    """
    if any(marker in secret.lower() for marker in PLACEHOLDER_MARKERS):
        return "is a placeholder from an example file"
    needed = HMAC_SECRET_BYTES[algorithm]
    if len(secret.encode()) < needed:
        return f"must be at least {needed} bytes for {algorithm} (RFC 7518 section 3.2)"
    if len(zlib.compress(secret.encode(), 9)) - _ZLIB_OVERHEAD < needed:
        return (
            f"is too predictable for {algorithm}: use random bytes, for example what "
            f"`keys generate` prints"
        )
    return None


def random_secret_problem(algorithm: str, secret: str) -> str | None:
    """Say why an HMAC secret is not encoded random bytes of the hash's size, or None.

    Outside development a secret must be random bytes in hex, base64 or base64url, as `keys
    generate`, `openssl rand -base64 48` or a secret manager's generator make them: a phrase a
    person chose can pass the length and compression checks and still be guessable.
    """
    needed = HMAC_SECRET_BYTES[algorithm]
    decoded = _decoded(secret.strip())
    if decoded is None or len(decoded) < needed:
        return (
            f"must be at least {needed} random bytes in hex, base64 or base64url outside "
            f"development (`keys generate` prints such a secret)"
        )
    if len(zlib.compress(decoded, 9)) - _ZLIB_OVERHEAD < needed * 3 // 4:
        return "decodes to bytes that are not random (a pattern); use `keys generate`"
    return None


def _decoded(text: str) -> bytes | None:
    """`text` as hex, or base64url / base64 (padded or not); None if it is none of them."""
    if re.fullmatch(r"(?:[0-9a-fA-F]{2})+", text):
        return bytes.fromhex(text)
    if re.fullmatch(r"[A-Za-z0-9_\-+/]+={0,2}", text):
        padded = text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4)
        try:
            return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        except ValueError:
            return None
    return None


def generate_key_material(algorithm: str) -> str:
    """Return new key material as text: a random secret (HMAC) or a PKCS#8 private key PEM."""
    if is_hmac(algorithm):
        return secrets.token_urlsafe(HMAC_SECRET_BYTES[algorithm] * 2)
    if algorithm in EC_CURVES:
        private_key: jws.AllowedPrivateKeys = ec.generate_private_key(EC_CURVES[algorithm])
    elif algorithm in ED25519_ALGORITHMS:
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


def load_key(
    algorithm: str,
    material: str,
    *,
    verify_only: bool = False,
    trusted_until: float | None = None,
) -> Key:
    """Parse and check key material for `algorithm`; raise `ConfigError` saying what is wrong.

    A verify-only key may be a public key PEM; a signing key must be the private key.
    """
    if is_hmac(algorithm):
        problem = secret_problem(algorithm, material)
        if problem:
            raise ConfigError(problem)
        secret = material.encode()
        kid = jwk_thumbprint({"kty": "oct", "k": _b64(secret)})
        signing = None if verify_only else secret
        return Key(kid, verifying_key=secret, signing_key=signing, trusted_until=trusted_until)
    private_key, parsed_public_key = _parse_pem(material, verify_only)
    public_key = _checked_key_type(algorithm, parsed_public_key)
    jwk = algorithm_object(algorithm).to_jwk(public_key, as_dict=True)
    kid = jwk_thumbprint(jwk)
    # `use` and `key_ops` must not both appear (RFC 7517 section 4.3): keep `use`, which every
    # verifier reads, and drop the `key_ops` PyJWT adds to RSA keys.
    jwk.pop("key_ops", None)
    public_jwk = {**jwk, "kid": kid, "alg": algorithm, "use": "sig"}
    return Key(
        kid,
        verifying_key=public_key,
        signing_key=None if verify_only else _signing_key(private_key),
        public_jwk=public_jwk,
        trusted_until=trusted_until,
    )


def split_key_list(algorithm: str, text: str) -> list[str]:
    """Split a list of keys: PEM blocks for key pairs, comma-separated secrets for HMAC."""
    if is_hmac(algorithm):
        return [part.strip() for part in text.split(",") if part.strip()]
    if _PEM_BLOCK.sub("", text).strip():
        raise ConfigError("holds text that is not a PEM block (-----BEGIN ...-----)")
    return [match.group(0) for match in _PEM_BLOCK.finditer(text)]


def build_keyset(
    algorithm: str, current: Key, others: list[Key], clock: Callable[[], float] = time.time
) -> KeySet:
    """Assemble a key set; the current key must be able to sign."""
    if current.signing_key is None:
        raise ConfigError("the current key cannot sign")
    trusted = {key.kid: key for key in [current, *others]}
    return KeySet(algorithm=algorithm, current_key=current, trusted=trusted, clock=clock)


@functools.lru_cache(maxsize=32)
def _parse_pem(material: str, verify_only: bool) -> tuple[PrivateKeyTypes | None, PublicKeyTypes]:
    """Parse a PEM key once per process: RSA parsing runs costly validity checks.

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


def _checked_key_type(algorithm: str, public_key: PublicKeyTypes) -> jws.AllowedPublicKeys:
    """`public_key`, if it is of the type and size `algorithm` needs."""
    if algorithm in RSA_ALGORITHMS:
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise ConfigError(f"is not an RSA key, which {algorithm} needs")
        if public_key.key_size < RSA_MIN_BITS:
            bits = public_key.key_size
            raise ConfigError(f"is a {bits}-bit RSA key; {algorithm} needs at least {RSA_MIN_BITS}")
        return public_key
    if algorithm in EC_CURVES:
        curve = EC_CURVES[algorithm].name
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name != curve:
            raise ConfigError(f"is not an EC key on curve {curve}, which {algorithm} needs")
        return public_key
    if not isinstance(public_key, ed25519.Ed25519PublicKey):
        raise ConfigError(f"is not an Ed25519 key, which {algorithm} needs")
    return public_key


def _signing_key(private_key: PrivateKeyTypes | None) -> jws.AllowedPrivateKeys:
    """The private key whose public half `_checked_key_type` accepted, as PyJWT types it."""
    if isinstance(
        private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        return private_key
    raise ConfigError("is not a private key this service can sign with")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
