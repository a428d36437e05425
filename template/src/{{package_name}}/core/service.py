"""The auth use cases the web layers call: register, log in, resolve the current user."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..settings import Settings
from .db import Database
from .keys import generate_hmac_secret, hmac_keyset
from .passwords import Argon2Parameters, PasswordHasher
from .schemas import LoginForm, Registration, TokenResponse, UserOut
from .tokens import TokenPolicy, TokenService
from .users import UserService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuthService:
    """Everything the web layer needs, built once at start-up from the settings."""

    database: Database
    users: UserService
    tokens: TokenService

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthService:
        """Load keys, open the database and create missing tables."""
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        if secret is None:
            log.warning("JWT_SECRET is not set: using a random secret until the process exits.")
            secret = generate_hmac_secret(settings.jwt_algorithm)
        keys = hmac_keyset(settings.jwt_algorithm, secret)
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
        return cls(database, UserService(database, hasher), TokenService(keys, policy))

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
