"""The auth use cases the web layers call: register, log in, resolve the current user."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..settings import Settings
from .db import Database, User
from .errors import NotFound, RevokedToken
from .keyring import load_keys
from .keys import KeySet, is_hmac
from .passwords import Argon2Parameters, PasswordHasher
from .refresh import Sessions, Strategy, Tokens
from .schemas import LoginForm, LogoutRequest, Registration, TokenResponse, UserOut
from .tokens import TokenPolicy, TokenService, bearer_token
from .users import Profile, UserService


@dataclass(frozen=True)
class AuthService:
    """Everything the web layer needs, built once at start-up from the settings."""

    database: Database
    keys: KeySet
    users: UserService
    tokens: TokenService
    sessions: Sessions

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthService:
        """Load keys, open the database and create missing tables."""
        keys = load_keys(settings)
        policy = TokenPolicy(
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            access_lifetime_seconds=settings.access_token_minutes * 60,
            refresh_lifetime_seconds=settings.refresh_token_days * 86400,
        )
        database = Database(settings.database_url)
        database.create_tables()
        hasher = PasswordHasher(
            Argon2Parameters(
                time_cost=settings.argon2_time_cost,
                memory_kib=settings.argon2_memory_kib,
                parallelism=settings.argon2_parallelism,
            ),
            max_concurrent=settings.argon2_max_concurrent,
        )
        tokens = TokenService(keys, policy)
        sessions = Sessions(Strategy(settings.refresh_strategy), database, tokens)
        return cls(database, keys, UserService(database, hasher), tokens, sessions)

    @property
    def refresh_enabled(self) -> bool:
        """Whether `/auth/refresh` exists."""
        return self.sessions.strategy is not Strategy.NONE

    def register(self, registration: Registration) -> UserOut:
        """Create a user from a validated registration."""
        return _user_out(self.users.register(registration.username, registration.password))

    def login(self, form: LoginForm) -> TokenResponse:
        """Check the credentials and start a session."""
        user = self.users.authenticate(form.username, form.password)
        return _token_response(self.sessions.start(user.id))

    def refresh(self, refresh_token: str) -> TokenResponse:
        """Exchange a refresh token for new tokens."""
        return _token_response(self.sessions.refresh(refresh_token))

    def logout(self, authorization: str | None, body: LogoutRequest) -> None:
        """End the session of the bearer token (and of the refresh token, if sent)."""
        claims = self.authenticate(bearer_token(authorization))
        self.sessions.end(claims, body.refresh_token)

    def authenticate(self, token: str) -> dict[str, Any]:
        """Return the claims of a valid access token that is not revoked; `sub` is the user id.

        No user lookup: for routes that need only who is calling. Any failure is an
        `InvalidToken`.
        """
        claims = self.tokens.verify_access(token)
        if self.sessions.is_revoked(claims["jti"], claims.get("sid")):
            raise RevokedToken()
        return claims

    def current_user(self, token: str) -> UserOut:
        """Return the user an access token belongs to; any failure is an `InvalidToken`.

        The revocation check and the user lookup are one query.
        """
        claims = self.tokens.verify_access(token)
        user = self.users.by_subject(claims["sub"], claims["jti"], claims.get("sid"))
        return _user_out(user)

    def jwks(self) -> dict[str, Any]:
        """The JWK Set of the public keys; HMAC services have none and answer 404."""
        if is_hmac(self.keys.algorithm):
            raise NotFound("This service signs with a shared secret (HMAC): it has no public keys.")
        return self.keys.jwks()


def _user_out(user: User | Profile) -> UserOut:
    return UserOut(id=str(user.id), username=user.username)


def _token_response(tokens: Tokens) -> TokenResponse:
    response = TokenResponse(access_token=tokens.access.token, expires_in=tokens.access.expires_in)
    if tokens.refresh is not None:
        response.refresh_token = tokens.refresh.token
        response.refresh_expires_in = tokens.refresh.expires_in
    return response
