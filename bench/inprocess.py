"""In-process figures for one rendered project (package `bench_service` on sys.path).

Prints JSON: token issue/verify per algorithm against bare PyJWT, the revocation check,
Argon2id hashing, login latency and refresh throughput per strategy. Run by bench/run.py.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import jwt
from bench_service.core import schema
from bench_service.core.db import Database
from bench_service.core.keys import (
    SUPPORTED_ALGORITHMS,
    build_keyset,
    generate_key_material,
    load_key,
)
from bench_service.core.passwords import Argon2Parameters, PasswordHasher
from bench_service.core.schemas import LoginForm
from bench_service.core.service import AuthService
from bench_service.core.tokens import TokenPolicy, TokenService
from bench_service.settings import Settings
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PASSWORD = "correct horse battery"


def per_call_us(function: Callable[[], object], repeat: int) -> float:
    """Median over 5 rounds of the mean time per call, in microseconds."""
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            function()
        rounds.append((time.perf_counter() - start) / repeat * 1e6)
    return statistics.median(rounds)


def key_material(algorithm: str, rsa_bits: int) -> str:
    """A new key: RSA of `rsa_bits` (the project generates 3072-bit development keys)."""
    if algorithm[:2] not in ("RS", "PS"):
        material: str = generate_key_material(algorithm)
        return material
    key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def tokens_for(algorithm: str, repeat: int, rsa_bits: int = 2048) -> dict[str, float]:
    material = key_material(algorithm, rsa_bits)
    keys = build_keyset(algorithm, load_key(algorithm, material), [])
    policy = TokenPolicy("bench-issuer", "bench-audience", 900)
    service = TokenService(keys, policy)
    fresh = [service.issue_access(str(uuid.uuid4())).token for _ in range(repeat * 5)]
    unseen = iter(fresh)
    seen = service.issue_access("user").token
    service.verify_access(seen)
    claims = jwt.decode(seen, options={"verify_signature": False})
    header = {"kid": keys.kid}
    verifying_key = keys.current_key.verifying_key
    bare = jwt.PyJWT()

    def bare_decode() -> object:
        return bare.decode(
            seen,
            verifying_key,
            algorithms=[algorithm],
            audience="bench-audience",
            issuer="bench-issuer",
            options={"require": list(claims)},
        )

    return {
        "issue_us": per_call_us(lambda: service.issue_access("user", "session"), repeat),
        "pyjwt_encode_us": per_call_us(
            lambda: bare.encode(claims, keys.signing_key, algorithm=algorithm, headers=header),
            repeat,
        ),
        "verify_first_us": per_call_us(lambda: service.verify_access(next(unseen)), repeat),
        "verify_again_us": per_call_us(lambda: service.verify_access(seen), repeat * 10),
        "pyjwt_decode_us": per_call_us(bare_decode, repeat),
    }


def settings_for(directory: Path, strategy: str) -> Settings:
    """Production settings, the Argon2id defaults included, on a new database with its
    schema (production never migrates by itself)."""
    settings = Settings(
        _env_file=None,
        environment="production",
        database_url=f"sqlite:///{directory / f'{uuid.uuid4().hex}.db'}",
        jwt_algorithm="EdDSA",
        jwt_private_key=generate_key_material("EdDSA"),
        jwt_issuer="bench-issuer",
        jwt_audience="bench-audience",
        refresh_strategy=strategy,
        # One caller in a loop: the per-client limit and the grace period would measure
        # themselves.
        throttle_client_per_minute=10**9,
        refresh_reuse_grace_seconds=0,
    )
    database = Database(settings.database_url)
    schema.upgrade(database)
    database.dispose()
    return settings


#: The registration's body, and the address the calls come from (throttling counts by it).
REGISTRATION = json.dumps({"username": "bench", "password": PASSWORD}).encode()
CLIENT = "127.0.0.1"


def sessions_and_logins(directory: Path, repeat: int) -> dict[str, object]:
    figures: dict[str, object] = {}
    settings = settings_for(directory, "rotating")
    parameters = Argon2Parameters(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )
    figures["argon2"] = vars(parameters)
    hasher = PasswordHasher(parameters)
    figures["argon2_hash_ms"] = per_call_us(lambda: hasher.hash(PASSWORD), 2) / 1e3
    service = AuthService.from_settings(settings)
    service.register(REGISTRATION, CLIENT)()
    form = LoginForm(username="bench", password=PASSWORD)
    figures["login_ms"] = per_call_us(lambda: service.login(form, CLIENT)(), 2) / 1e3
    access = service.tokens.issue_access(str(uuid.uuid4()), uuid.uuid4().hex)
    claims = service.tokens.verify_access(access.token)
    for _ in range(1000):  # a revocation table that is not empty
        other = service.tokens.issue_access(str(uuid.uuid4()), uuid.uuid4().hex)
        service.logout(service.authenticate(other.token), b"")
    figures["revocation_check_us"] = per_call_us(
        lambda: service.sessions.is_revoked(claims), repeat * 10
    )
    figures["authenticate_us"] = per_call_us(
        lambda: service.authenticate(access.token), repeat * 10
    )
    service.database.dispose()
    refreshes = {}
    for strategy in ("rotating", "stateless"):
        service = AuthService.from_settings(settings_for(directory, strategy))
        service.register(REGISTRATION, CLIENT)()
        token = service.login(form, CLIENT)().refresh_token
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < 1.0:
            token = service.refresh(token).refresh_token
            count += 1
        refreshes[strategy] = count / (time.perf_counter() - start)
        service.database.dispose()
    figures["refreshes_per_second"] = refreshes
    return figures


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    chosen = sys.argv[2] if len(sys.argv) > 2 else ""
    algorithms = chosen.split(",") if chosen else list(SUPPORTED_ALGORITHMS)
    with tempfile.TemporaryDirectory() as directory:
        figures = sessions_and_logins(Path(directory), repeat)
    tokens = {algorithm: tokens_for(algorithm, repeat) for algorithm in algorithms}
    if "RS256" in algorithms:
        tokens["RS256 (3072-bit key)"] = tokens_for("RS256", repeat, rsa_bits=3072)
    figures["tokens"] = tokens
    json.dump(figures, sys.stdout)


if __name__ == "__main__":
    main()
