"""The auth use cases the web layers call: register, log in, resolve the current user."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..settings import Settings
from .db import Database
from .errors import NotFound
from .keyring import load_keys
from .keys import KeySet, is_hmac
from .passwords import Argon2Parameters, PasswordHasher
from .schemas import LoginForm, Registration, TokenResponse, UserOut
from .tokens import TokenPolicy, TokenService
from .users import UserService


@dataclass(frozen=True)
class AuthService:
    """Everything the web layer needs, built once at start-up from the settings."""

    database: Database
    keys: KeySet
    users: UserService
    tokens: TokenService

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthService:
        """Load keys, open the database and create missing tables."""
        keys = load_keys(settings)
        policy = TokenPolicy(
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            access_lifetime_seconds=settings.access_token_minutes * 60,
        )
        database = Database(settings.database_url)
        database.create_tables()
        hasher = PasswordHasher(
            Argon2Parameters(
                time_cost=settings.argon2_time_cost,
                memory_kib=settings.argon2_memory_kib,
                parallelism=settings.argon2_parallelism,
            )
        )
        return cls(database, keys, UserService(database, hasher), TokenService(keys, policy))

    def register(self, registration: Registration) -> UserOut:
        """Create a user from a validated registration."""
        user = self.users.register(registration.username, registration.password)
        return UserOut(id=str(user.id), username=user.username)

    def login(self, form: LoginForm) -> TokenResponse:
        """Check the credentials and issue an access token."""
        user = self.users.authenticate(form.username, form.password)
        access = self.tokens.issue_access(str(user.id))
        return TokenResponse(access_token=access.token, expires_in=access.expires_in)

    def current_user(self, token: str) -> UserOut:
        """Return the user an access token belongs to; any failure is an `InvalidToken`."""
        claims = self.tokens.verify_access(token)
        user = self.users.by_subject(claims["sub"])
        return UserOut(id=str(user.id), username=user.username)

    def jwks(self) -> dict[str, Any]:
        """The JWK Set of the public keys; HMAC services have none and answer 404."""
        if is_hmac(self.keys.algorithm):
            raise NotFound("This service signs with a shared secret (HMAC): it has no public keys.")
        return self.keys.jwks()
