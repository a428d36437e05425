"""The auth use cases the web layers call: register, log in, resolve the current user."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..settings import Settings
from . import schema
from .db import Database, DatabaseLimits, User
from .errors import (
    ConfigError,
    InvalidToken,
    NotFound,
    RevokedToken,
    ServiceError,
    ServiceUnavailable,
    TokenEndpointError,
)
from .events import security_event
from .keyring import load_keys
from .keys import is_hmac
from .passwords import Argon2Parameters, PasswordHasher
from .refresh import Sessions, Strategy, Tokens
from .revocations import Listener, Revocations
from .schemas import (
    ErrorOut,
    GrantType,
    LoginForm,
    LogoutReport,
    RefreshRequest,
    Registration,
    TokenResponse,
    UserOut,
    parse_logout_body,
    parse_token_request,
    validate,
)
from .tokens import KeySource, TokenPolicy, TokenService
from .users import Profile, UserService


@dataclass(frozen=True)
class AuthService:
    """Everything the web layer needs, built once at start-up from the settings."""

    database: Database
    keys: KeySource
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
            leeway_seconds=settings.jwt_leeway_seconds,
        )
        database = database_of(settings)
        # A database that is away at start is no reason not to start: requests that need it
        # answer 503 until it is back, the others work (the outage is logged once). One
        # that is behind the code is, outside development (`schema.prepare`).
        try:
            with contextlib.suppress(ServiceUnavailable):
                schema.prepare(database, development=settings.environment == "development")
        except ConfigError:
            database.dispose()
            raise
        hasher = PasswordHasher(
            Argon2Parameters(
                time_cost=settings.argon2_time_cost,
                memory_kib=settings.argon2_memory_kib,
                parallelism=settings.argon2_parallelism,
            ),
            max_concurrent=settings.argon2_max_concurrent,
        )
        tokens = TokenService(keys, policy)
        strategy = Strategy(settings.refresh_strategy)
        sessions = Sessions(strategy, database, tokens, _live_revocations(database, policy))
        return cls(database, keys, UserService(database, hasher), tokens, sessions)

    @property
    def refresh_enabled(self) -> bool:
        """Whether `/auth/refresh` exists."""
        return self.sessions.strategy is not Strategy.NONE

    @property
    def login_grants(self) -> tuple[GrantType, ...]:
        """The grants of `/auth/login`, the token endpoint; a JSON body without `grant_type`
        means the first."""
        refresh = (GrantType.REFRESH_TOKEN,) if self.refresh_enabled else ()
        return (GrantType.PASSWORD, *refresh)

    def token(
        self, content_type: str | None, body: bytes, grants: tuple[GrantType, ...]
    ) -> TokenResponse:
        """The token endpoint (RFC 6749): parse the request, run its grant, and answer
        refusals as section 5.2 says. `grants` are those this path offers."""
        try:
            grant, data = parse_token_request(content_type, body, grants)
            if grant is GrantType.PASSWORD:
                return self.login(validate(LoginForm, data))
            try:
                return self.refresh(validate(RefreshRequest, data).refresh_token)
            except InvalidToken as exc:
                security_event("token_refused", kind="refresh", reason=exc.code, detail=exc.detail)
                raise
        except ServiceError as exc:
            if exc.oauth_error is None:
                raise
            raise TokenEndpointError(exc) from exc

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

    def logout(self, claims: dict[str, Any], body: bytes) -> LogoutReport | None:
        """End the session of an authenticated access token (`claims`), then that of the
        refresh token in the body, if any. Return None when all went well, or a report of why
        the refresh token (or the body) was refused; the access token's session ends anyway."""
        try:
            refresh_token = parse_logout_body(body).refresh_token
        except ServiceError as exc:
            refused: ServiceError | None = exc
            self.sessions.end(claims, None)
        else:
            refused = self.sessions.end(claims, refresh_token)
        security_event(
            "logout",
            user_id=claims["sub"],
            session_id=claims.get("sid"),
            refresh_token_refused=refused.code if refused else None,
        )
        return None if refused is None else _logout_report(refused)

    def authenticate(self, token: str) -> dict[str, Any]:
        """Return the claims of a valid access token that is not revoked; `sub` is the user id.

        No user lookup: for routes that need only who is calling. Any failure is an
        `InvalidToken`. Both steps in one call; async callers run `verify` on the event loop
        (no I/O) and `check_not_revoked` in a thread.
        """
        return self.check_not_revoked(self.verify(token))

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid access token, revoked or not: signature and claims only, no
        I/O (a token seen before is a memory lookup)."""
        with _refusals_logged():
            return self.tokens.verify_access(token)

    @property
    def revocations_in_memory(self) -> bool:
        """Whether `check_not_revoked` needs no database now (async callers may skip the
        thread hand-off)."""
        return self.sessions.revocations_known

    def check_not_revoked(self, claims: dict[str, Any]) -> dict[str, Any]:
        """Return `claims` if neither the token nor its login is revoked: from memory, or one
        database read (see `revocations_in_memory`)."""
        with _refusals_logged():
            if self.sessions.is_revoked(claims["jti"], claims.get("sid")):
                raise RevokedToken()
        return claims

    def current_user(self, token: str) -> UserOut:
        """Return the user an access token belongs to; any failure is an `InvalidToken`."""
        return self.user_of(self.verify(token))

    def user_of(self, claims: dict[str, Any]) -> UserOut:
        """The user of verified `claims`, if neither token nor login is revoked: one read
        (the revocations from memory, or in the same read)."""
        with _refusals_logged():
            if self.sessions.revocations_known:
                if self.sessions.is_revoked(claims["jti"], claims.get("sid")):
                    raise RevokedToken()
                user = self.users.by_subject(claims["sub"])
            else:
                user = self.users.by_subject(claims["sub"], claims["jti"], claims.get("sid"))
        return _user_out(user)

    def ready(self) -> dict[str, str]:
        """Readiness: the database answers and has the code's schema; raise
        `ServiceUnavailable` if not."""
        self.database.ping()
        schema.check(self.database)
        return {"status": "ready"}

    def jwks(self) -> dict[str, Any]:
        """The JWK Set of the public keys; HMAC services have none and answer 404."""
        keys = self.keys.current()
        if is_hmac(keys.algorithm):
            raise NotFound("This service signs with a shared secret (HMAC): it has no public keys.")
        return keys.jwks()


def database_of(settings: Settings) -> Database:
    """The database `settings` name, with their limits."""
    return Database(
        settings.database_url,
        DatabaseLimits(
            connect_seconds=settings.database_connect_timeout,
            statement_seconds=settings.database_statement_timeout,
            pool_size=settings.database_pool_size,
        ),
    )


def _live_revocations(database: Database, policy: TokenPolicy) -> Revocations | None:
    """On PostgreSQL, the live revocations in memory, kept current by a listener thread."""
    if database.engine.dialect.name != "postgresql":
        return None
    window = policy.access_lifetime_seconds + policy.leeway_seconds
    revocations = Revocations(window)
    conninfo = database.engine.url.set(drivername="postgresql")
    listener = Listener(database, revocations, conninfo.render_as_string(hide_password=False))
    database.on_dispose.append(listener.start().stop)
    return revocations


@contextmanager
def _refusals_logged() -> Iterator[None]:
    """Log a refused access token as a security event (its reason, never the token)."""
    try:
        yield
    except InvalidToken as exc:
        security_event("token_refused", kind="access", reason=exc.code, detail=exc.detail)
        raise


def _logout_report(error: ServiceError) -> LogoutReport:
    return LogoutReport(refresh_token_error=ErrorOut(detail=error.detail, code=error.code))


def _user_out(user: User | Profile) -> UserOut:
    return UserOut(id=str(user.id), username=user.username)


def _token_response(tokens: Tokens) -> TokenResponse:
    response = TokenResponse(access_token=tokens.access.token, expires_in=tokens.access.expires_in)
    if tokens.refresh is not None:
        response.refresh_token = tokens.refresh.token
        response.refresh_expires_in = tokens.refresh.expires_in
    return response
