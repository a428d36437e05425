"""Where keys come from: the environment, or the key ring that `<package> keys ...` manages.

The key ring is a directory (JWT_KEYS_DIR) of key files, one per `kid`, and a manifest naming
the current key, an optional staged key (trusted, not yet signing) and retiring keys (trusted
until their grace period ends). Files are created with mode 0600 in a 0700 directory.

A running service follows the ring: it rereads the manifest when it changes (looking at most
once a second), so `keys stage`, `keys rotate` and `keys retire` take effect without a
restart, and a retiring key stops verifying, and leaves the JWK Set, when its grace ends.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..settings import Settings
from .errors import ConfigError
from .keys import (
    Key,
    KeySet,
    build_keyset,
    generate_key_material,
    is_hmac,
    key_type,
    load_key,
    random_secret_problem,
    split_key_list,
)

log = logging.getLogger(__name__)

MANIFEST = "keyring.json"
#: How `copier copy` marks the HMAC secret it writes into `.env`: development only.
DEVELOPMENT_SECRET_PREFIX = "dev-"  # noqa: S105 - a marker, not a secret
#: How often, at most, a running service looks for a changed manifest (one `stat`).
RECHECK_SECONDS = 1.0


@dataclass
class Manifest:
    """The key ring's state: which `kid` signs, which is staged, which are retiring (until when)."""

    algorithm: str
    current: str
    staged: str | None = None
    retiring: dict[str, float] = field(default_factory=dict)
    #: Made automatically on a first start in development: refused anywhere else.
    development: bool = False


class KeyRing:
    """The key files in one directory, and the operations of a zero-downtime rotation."""

    def __init__(
        self, directory: Path, algorithm: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.directory = directory
        self.algorithm = algorithm
        self._clock = clock

    @property
    def exists(self) -> bool:
        """Whether the directory holds a key ring."""
        return (self.directory / MANIFEST).is_file()

    @property
    def made_for_development(self) -> bool:
        """Whether the ring was made automatically by a first start in development."""
        return self._read().development

    def load(self) -> KeySet:
        """Parse every trusted key once: current, staged, and retiring keys still in grace.

        A retiring key carries the end of its grace, so the key set stops trusting it then.
        """
        manifest = self._read()
        now = self._clock()
        current = self._load(manifest.current, verify_only=False)
        others = [self._load(manifest.staged, verify_only=True)] if manifest.staged else []
        others += [
            self._load(kid, verify_only=True, trusted_until=until)
            for kid, until in manifest.retiring.items()
            if until > now
        ]
        return build_keyset(self.algorithm, current, others, self._clock)

    def version(self) -> tuple[int, int, int] | None:
        """What changes when the manifest is rewritten (it is replaced, never edited in place)."""
        try:
            stat = (self.directory / MANIFEST).stat()
        except OSError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def create(self, *, development: bool = False) -> bool:
        """Create the ring with one new key; False if another process created it first."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        kid = self._new_key_file()
        manifest_path = self.directory / MANIFEST
        staging = self.directory / f".{MANIFEST}.{secrets.token_hex(8)}"
        manifest = Manifest(self.algorithm, kid, development=development)
        _write_private(staging, json.dumps(asdict(manifest), indent=2))
        try:
            os.link(staging, manifest_path)  # atomic: exactly one creator wins
        except FileExistsError:
            (self.directory / f"{kid}.key").unlink()
            return False
        finally:
            staging.unlink()
        return True

    def stage(self) -> str:
        """Add the next key, trusted for verification but not yet signing; return its kid."""
        manifest = self._read()
        if manifest.staged is None:
            manifest.staged = self._new_key_file()
            self._write(manifest)
        return manifest.staged

    def rotate(self, grace_seconds: int) -> tuple[str, str]:
        """Make the staged (or a new) key current; the old one is trusted for `grace_seconds`."""
        manifest = self._read()
        new = manifest.staged or self._new_key_file()
        old = manifest.current
        manifest.retiring[old] = self._clock() + grace_seconds
        manifest.current, manifest.staged = new, None
        self._write(manifest)
        return new, old

    def retire(self, *, everything: bool = False) -> list[str]:
        """Delete retiring keys whose grace is over (all of them with `everything`)."""
        manifest = self._read()
        now = self._clock()
        done = [kid for kid, until in manifest.retiring.items() if everything or until <= now]
        for kid in done:
            del manifest.retiring[kid]
        self._write(manifest)
        for kid in done:
            (self.directory / f"{kid}.key").unlink(missing_ok=True)
        return done

    def describe(self) -> list[tuple[str, str]]:
        """List (kid, role) for every key in the ring."""
        manifest = self._read()
        rows = [(manifest.current, "current: signs new tokens")]
        if manifest.staged:
            rows.append((manifest.staged, "staged: trusted, signs after the next rotate"))
        for kid, until in sorted(manifest.retiring.items(), key=lambda item: item[1]):
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(until))
            state = "trusted until" if until > self._clock() else "expired at"
            rows.append((kid, f"retiring: {state} {when}"))
        return rows

    def _load(self, kid: str, *, verify_only: bool, trusted_until: float | None = None) -> Key:
        path = self.directory / f"{kid}.key"
        try:
            material = path.read_text()
        except OSError as exc:
            raise ConfigError(f"JWT_KEYS_DIR: cannot read key {path}: {exc.strerror}") from exc
        try:
            key = load_key(
                self.algorithm, material, verify_only=verify_only, trusted_until=trusted_until
            )
        except ConfigError as exc:
            raise ConfigError(f"JWT_KEYS_DIR: {path} {exc}") from exc
        if key.kid != kid:
            raise ConfigError(f"JWT_KEYS_DIR: {path} does not hold the key named {kid}")
        return key

    def _new_key_file(self) -> str:
        material = generate_key_material(self.algorithm)
        kid = load_key(self.algorithm, material).kid
        _write_private(self.directory / f"{kid}.key", material)
        return kid

    def _read(self) -> Manifest:
        path = self.directory / MANIFEST
        try:
            manifest = Manifest(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise ConfigError(
                f"JWT_KEYS_DIR: no key ring in {self.directory}; create one with `keys rotate`"
            ) from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"JWT_KEYS_DIR: {path} is not a key ring manifest") from exc
        # EdDSA and Ed25519 name the same signature with the same keys: a ring made for one
        # serves the other.
        if key_type(manifest.algorithm) != key_type(self.algorithm):
            raise ConfigError(
                f"JWT_KEYS_DIR holds {manifest.algorithm} keys but JWT_ALGORITHM is "
                f"{self.algorithm}; point JWT_KEYS_DIR at another directory or change the algorithm"
            )
        return manifest

    def _write(self, manifest: Manifest) -> None:
        path = self.directory / MANIFEST
        staging = self.directory / f".{MANIFEST}.{secrets.token_hex(8)}"
        _write_private(staging, json.dumps(asdict(manifest), indent=2))
        staging.replace(path)


class RingKeys:
    """The key ring's key set, kept current while the service runs.

    `current()` is called per request: it costs a clock read, and once a second a `stat` of
    the manifest; only a changed manifest is parsed again. A ring that cannot be read any more
    (a half-finished manual edit, a deleted key file) keeps the last good key set and logs why.
    """

    def __init__(self, ring: KeyRing, clock: Callable[[], float] = time.monotonic) -> None:
        self._ring = ring
        self._clock = clock
        self._version = ring.version()
        self._keys = ring.load()
        self._checked = clock()
        self._lock = threading.Lock()

    def current(self) -> KeySet:
        """The key set as the ring is now."""
        if self._clock() - self._checked >= RECHECK_SECONDS:
            self._recheck()
        return self._keys

    def _recheck(self) -> None:
        with self._lock:
            self._checked = self._clock()
            version = self._ring.version()
            if version == self._version:
                return
            try:
                self._keys = self._ring.load()
            except ConfigError as exc:
                log.error("Kept the previous keys: the key ring changed but %s", exc)
            self._version = version


def _write_private(path: Path, text: str) -> None:
    """Write a new file that only its owner can read (0600), refusing to overwrite one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)


def load_keys(settings: Settings) -> KeySet | RingKeys:
    """Load the keys once at start-up: from the environment if set, else from the key ring.

    In development an empty key ring is created with a new key, so no manual step is needed;
    anywhere else a missing key stops the start with a message naming the variable to set.
    Either result is a key source: `current()` returns the key set to use now.
    """
    algorithm = settings.jwt_algorithm
    development = settings.environment == "development"
    variable, material = _signing_material(settings)
    if material is not None:
        previous = (
            settings.jwt_previous_keys.get_secret_value() if settings.jwt_previous_keys else ""
        )
        try:
            items = split_key_list(algorithm, previous)
        except ConfigError as exc:
            raise ConfigError(f"JWT_PREVIOUS_KEYS {exc}") from exc
        current = _load_named(variable, algorithm, material, verify_only=False)
        others = [
            _load_named("JWT_PREVIOUS_KEYS", algorithm, item, verify_only=True) for item in items
        ]
        if not development:
            named = [(variable, material)] + [("JWT_PREVIOUS_KEYS", item) for item in items]
            _refuse_development_secrets(settings, named)
        return build_keyset(algorithm, current, others)
    ring = KeyRing(settings.jwt_keys_dir, algorithm)
    needed = variable if is_hmac(algorithm) else "JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE"
    if not ring.exists:
        if not development:
            raise ConfigError(
                f"{needed} is required in {settings.environment} for {algorithm} "
                f"(or a key ring in JWT_KEYS_DIR, made with `keys rotate`); "
                f"`keys generate` prints new key material"
            )
        if ring.create(development=True):
            log.warning("Created a new %s key ring in %s (git-ignored).", algorithm, ring.directory)
    elif not development:
        if ring.made_for_development:
            raise ConfigError(
                f"JWT_KEYS_DIR ({ring.directory}) holds the key ring made automatically for "
                f"development; in {settings.environment} set {needed}, or make a key ring with "
                f"`keys rotate` in an empty JWT_KEYS_DIR"
            )
        for path in sorted(ring.directory.iterdir()):
            _refuse_if_readable_by_others("JWT_KEYS_DIR", path)
    return RingKeys(ring)


def _signing_material(settings: Settings) -> tuple[str, str | None]:
    """Return the variable that holds the signing key and its value, checking for mix-ups."""
    secret, pem, path = settings.jwt_secret, settings.jwt_private_key, settings.jwt_private_key_file
    if is_hmac(settings.jwt_algorithm):
        if pem or path:
            raise ConfigError(
                f"JWT_PRIVATE_KEY/JWT_PRIVATE_KEY_FILE are for key pairs, but JWT_ALGORITHM is "
                f"{settings.jwt_algorithm}, which signs with JWT_SECRET; unset them"
            )
        return "JWT_SECRET", secret.get_secret_value() if secret else None
    if secret:
        raise ConfigError(
            f"JWT_SECRET is for HMAC algorithms, but JWT_ALGORITHM is {settings.jwt_algorithm}; "
            f"unset it and set JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE"
        )
    if pem and path:
        raise ConfigError("set JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE, not both")
    if path:
        try:
            material = path.read_text()
        except OSError as exc:
            raise ConfigError(f"JWT_PRIVATE_KEY_FILE: cannot read {path}: {exc.strerror}") from exc
        if settings.environment != "development":
            _refuse_if_readable_by_others("JWT_PRIVATE_KEY_FILE", path)
        return "JWT_PRIVATE_KEY_FILE", material
    return "JWT_PRIVATE_KEY", pem.get_secret_value() if pem else None


def _refuse_development_secrets(settings: Settings, named: list[tuple[str, str]]) -> None:
    """Outside development: no secret copier wrote for development, and HMAC secrets that are
    random bytes, encoded (what `keys generate` prints), not text a person chose."""
    for variable, material in named:
        if material.startswith(DEVELOPMENT_SECRET_PREFIX):
            raise ConfigError(
                f"{variable} is the development secret that `copier copy` wrote into .env; "
                f"set a new one for {settings.environment} (`keys generate` prints one) in the "
                f"environment or your secret store"
            )
        if is_hmac(settings.jwt_algorithm):
            problem = random_secret_problem(settings.jwt_algorithm, material)
            if problem:
                raise ConfigError(f"{variable} {problem}")


def _refuse_if_readable_by_others(variable: str, path: Path) -> None:
    """Outside development, a private key file must not be readable by every user."""
    mode = path.stat().st_mode
    if mode & stat.S_IROTH:
        raise ConfigError(
            f"{variable}: {path} can be read by every user (mode {stat.filemode(mode)}); "
            f"make it private: chmod 600 {path}"
        )


def _load_named(variable: str, algorithm: str, material: str, *, verify_only: bool) -> Key:
    try:
        return load_key(algorithm, material, verify_only=verify_only)
    except ConfigError as exc:
        raise ConfigError(f"{variable} {exc}") from exc
