"""The auth use cases the web layers call: register, log in, resolve the current user, and
the rest of an account's life (change or reset its password, end every session, delete it).

Each method takes what the web layer has (the body as bytes, the verified claims, the client's
address) and returns a schema or raises a `ServiceError`; the web layers stay thin. A method
whose request hashes a password returns `Hashing` work instead: it has run the checks that
need no hashing (throttling, the password policy) and returns the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import delete
from sqlalchemy.engine import make_url

from ..settings import Settings
from . import openapi, schema
from .claims import Claims, user_id_of
from .clients import TrustedProxies, client_address
from .cookies import RefreshCookie
from .db import Database, DatabaseLimits, PasswordReset, User
from .errors import (
    NO_STORE,
    ConfigError,
    InvalidCredentials,
    InvalidResetToken,
    InvalidToken,
    MissingRefreshToken,
    NotFound,
    RevokedToken,
    ServiceError,
    ServiceUnavailable,
    TokenEndpointError,
    WrongPassword,
)
from .events import security_event
from .jobs import Background
from .keyring import load_keys
from .keys import is_hmac
from .mail import Message, Outbox, outbox_of
from .openapi import Features
from .password_policy import PasswordPolicy
from .passwords import Argon2Parameters, PasswordHasher
from .refresh import Sessions, Strategy, Tokens
from .revocations import Listener, Revocations
from .schemas import (
    EmailChange,
    ErrorOut,
    GrantType,
    LoginForm,
    LogoutReport,
    PasswordChange,
    PasswordConfirmation,
    PasswordResetConfirmation,
    PasswordResetRequest,
    RefreshRequest,
    Registration,
    TokenResponse,
    UserOut,
    parse_json,
    parse_logout_body,
    parse_token_request,
    validate,
)
from .throttle import Throttle, ThrottleLimits
from .tokens import KeySource, TokenPolicy, TokenService
from .users import Profile, UserService

R = TypeVar("R")

#: What a request that hashes a password has left to do once its cheap checks passed: the web
#: layer runs it when the hasher admits one more (`PasswordHasher.admitted`), so requests that
#: are throttled, or whose new password is refused, never take a hashing place.
Hashing = Callable[[], R]


@dataclass(frozen=True)
class PasswordResets:
    """How password-reset messages are made and sent; `outbox` None: reset is not offered."""

    outbox: Outbox | None
    lifetime_seconds: int = 1800
    #: The page a message links to, with `{token}` in it; None: the message carries the token.
    url: str | None = None
    #: Looks the address up, stores the token and queues the message, after the response.
    jobs: Background = field(default_factory=Background)

    def message(self, to: str, username: str, token: str) -> Message:
        """The reset message for one user."""
        minutes = self.lifetime_seconds // 60
        if self.url:
            action = f"open this link within {minutes} minutes:\n\n{self.url.format(token=token)}"
        else:
            action = (
                f"send this token to POST /auth/password-reset/confirm, with your new password, "
                f"within {minutes} minutes:\n\n{token}"
            )
        text = (
            f"Hello {username},\n\nSomeone, hopefully you, asked to reset the password of your "
            f"account. To choose a new password, {action}\n\nIf you did not ask for this, "
            f"ignore this message: your password stays as it is.\n"
        )
        return Message(to=to, subject="Reset your password", text=text)

    def close(self) -> None:
        """Finish the queued work and messages (at shutdown)."""
        self.jobs.close(timeout=5)
        if self.outbox is not None:
            self.outbox.close(timeout=5)


@dataclass(frozen=True)
class AuthService:
    """Everything the web layer needs, built once at start-up from the settings."""

    database: Database
    keys: KeySource
    users: UserService
    tokens: TokenService
    sessions: Sessions
    throttle: Throttle
    proxies: TrustedProxies
    resets: PasswordResets
    #: The refresh-token cookie for browser clients, or None (`REFRESH_TOKEN_COOKIE` off).
    cookie: RefreshCookie | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, listen: bool = True) -> AuthService:
        """Load keys, open the database and create missing tables. `listen=False`: no
        revocation listener, for a process that serves no requests (gunicorn's master, the
        command line); its revocations reach the servers all the same."""
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
            max_waiting=settings.argon2_max_waiting,
        )
        users = UserService(database, hasher, PasswordPolicy(settings.password_min_strength))
        tokens = TokenService(keys, policy)
        sessions = Sessions(
            settings.refresh_strategy,
            database,
            tokens,
            _live_revocations(database, policy, settings.database_listen_url) if listen else None,
            reuse_grace_seconds=settings.refresh_reuse_grace_seconds,
        )
        resets = PasswordResets(
            outbox_of(settings),
            settings.password_reset_minutes * 60,
            settings.password_reset_url,
        )
        if resets.outbox is not None:
            database.on_dispose.append(resets.close)
        return cls(
            database,
            keys,
            users,
            tokens,
            sessions,
            Throttle(database, ThrottleLimits.from_settings(settings)),
            TrustedProxies.parse(settings.trusted_proxies),
            resets,
            # The settings refuse the cookie without a refresh strategy.
            RefreshCookie(secure=settings.environment != "development")
            if settings.refresh_token_cookie
            else None,
        )

    @property
    def password_reset_enabled(self) -> bool:
        """Whether `/auth/password-reset` exists: mail can be sent (or logged, in development)."""
        return self.resets.outbox is not None

    def openapi(self, title: str, version: str) -> dict[str, Any]:
        """The OpenAPI description of the routes this service offers (`openapi`)."""
        features = Features(
            refresh=self.refresh_enabled,
            password_reset=self.password_reset_enabled,
            jwks=not is_hmac(self.keys.current().algorithm),
            cookie=self.cookie.name if self.cookie is not None else None,
        )
        return openapi.document(features, title, version)

    def client_of(self, peer: str | None, forwarded_for: list[str]) -> str:
        """The client's address: the socket's peer, or what `TRUSTED_PROXIES` say it was."""
        return client_address(peer, forwarded_for, self.proxies)

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

    def token_request(
        self,
        content_type: str | None,
        body: bytes,
        grants: tuple[GrantType, ...],
        cookie_token: str | None = None,
    ) -> tuple[GrantType, dict[str, Any]]:
        """The token endpoint (RFC 6749), first half: parse a token request (no I/O) into its
        grant and parameters (`grant` runs it; refusals are answered as section 5.2 says; `grants`
        are those this path offers). Async callers look at
        the grant to run a password grant where hashing waits its turn (`PasswordHasher`).
        `cookie_token`: the refresh token of a browser client's cookie (`cookie_token_of`),
        used when the request names none; a refresh-only path then needs no body at all."""
        with _token_endpoint_errors():
            if grants == (GrantType.REFRESH_TOKEN,) and not body.strip():
                if cookie_token is None:
                    raise MissingRefreshToken()
                return GrantType.REFRESH_TOKEN, {"refresh_token": cookie_token}
            grant, data = parse_token_request(content_type, body, grants)
            if cookie_token is not None and grant is GrantType.REFRESH_TOKEN:
                data.setdefault("refresh_token", cookie_token)
            return grant, data

    def cookie_token_of(
        self, header: Callable[[str], str | None], cookie_header: str | None
    ) -> str | None:
        """The refresh token a browser client's cookie carries: only in cookie mode, and only
        for a request with the `X-Requested-With` header (`cookies`: the CSRF defence)."""
        if self.cookie is None or not self.cookie.wanted(header):
            return None
        return self.cookie.read(cookie_header)

    def deliver(
        self, tokens: TokenResponse, header: Callable[[str], str | None]
    ) -> tuple[TokenResponse, dict[str, str]]:
        """The body and headers of a token response: in cookie mode, a browser client's
        refresh token leaves the body for an `HttpOnly` cookie."""
        headers = dict(NO_STORE)
        if self.cookie is None or tokens.refresh_token is None or not self.cookie.wanted(header):
            return tokens, headers
        headers["Set-Cookie"] = self.cookie.set(
            tokens.refresh_token, tokens.refresh_expires_in or 0
        )
        return tokens.model_copy(update={"refresh_token": None}), headers

    def logout_headers(self, header: Callable[[str], str | None]) -> dict[str, str]:
        """A browser client's logout also deletes its refresh-token cookie."""
        if self.cookie is None or not self.cookie.wanted(header):
            return {}
        return {"Set-Cookie": self.cookie.clear()}

    def password_grant(
        self, request: tuple[GrantType, dict[str, Any]], client: str
    ) -> Hashing[TokenResponse]:
        """Run a parsed password grant (`token_request`) for the client at address `client`:
        throttling now, the password check (`Hashing`) when admitted."""
        _, data = request
        with _token_endpoint_errors():
            self.throttle.count_request(client)
            login = self.login(validate(LoginForm, data), client)

        def check_password() -> TokenResponse:
            with _token_endpoint_errors():
                return login()

        return check_password

    def refresh_grant(
        self, request: tuple[GrantType, dict[str, Any]], client: str
    ) -> TokenResponse:
        """Run a parsed refresh-token grant (`token_request`) for the client at `client`."""
        _, data = request
        with _token_endpoint_errors():
            self.throttle.count_request(client)
            try:
                return self.refresh(validate(RefreshRequest, data).refresh_token)
            except InvalidToken as exc:
                security_event("token_refused", kind="refresh", reason=exc.code, detail=exc.detail)
                raise

    def register(self, body: bytes, client: str) -> Hashing[UserOut]:
        """Create a user from a registration's JSON body: throttling and the password policy
        now, hashing and storing when admitted."""
        registration = validate(Registration, parse_json(body))
        self.throttle.count_request(client)
        username, password, email = registration.username, registration.password, registration.email
        self.users.policy.check(password, username=username, email=email)

        def create() -> UserOut:
            user = self.users.create(username, password, email)
            security_event("user_registered", user_id=user.id)
            return _user_out(user)

        return create

    def login(self, form: LoginForm, client: str) -> Hashing[TokenResponse]:
        """Check the credentials and start a session. Guessing is throttled per account and
        client before any hashing (`Throttle`): a refusal is raised here, not by the work."""
        account = form.username.lower()
        self.throttle.check_login(account, client)

        def check_password() -> TokenResponse:
            try:
                user = self.users.authenticate(form.username, form.password)
            except InvalidCredentials:
                self.throttle.login_failed(account, client)
                raise
            self.throttle.login_succeeded(account, client)
            return _token_response(self.sessions.start(user))

        return check_password

    def refresh(self, refresh_token: str) -> TokenResponse:
        """Exchange a refresh token for new tokens."""
        return _token_response(self.sessions.refresh(refresh_token))

    def change_password(self, claims: Claims, body: bytes, client: str) -> Hashing[TokenResponse]:
        """Change the caller's password (confirmed by the current one), end every session of
        theirs, this one included, and start a new one for the caller: its tokens are the
        answer. A wrong current password counts as a failed login. The new password is
        checked against the policy first, before the current one is verified."""
        change = validate(PasswordChange, parse_json(body))
        user = self._confirming(claims, client)
        self.users.check_new_password(user, change.new_password)

        def change_password() -> TokenResponse:
            self._confirm(user, change.current_password, client)
            new_hash = self.users.hasher.hash(change.new_password)
            with self.database.session() as db:
                self.users.set_password_hash(db, user.id, new_hash)
                self.sessions.end_everywhere(user.id, db)
            security_event("password_changed", user_id=user.id)
            return _token_response(self.sessions.start(user))

        return change_password

    def logout_all(self, claims: Claims) -> None:
        """End every session of the caller, on every device: every token issued to them up
        to now is refused from now on."""
        user_id = user_id_of(claims)
        self.sessions.end_everywhere(user_id)
        security_event("logout_everywhere", user_id=user_id)

    def delete_account(self, claims: Claims, body: bytes, client: str) -> Hashing[None]:
        """Delete the caller's account (confirmed by its password): every session ends, the
        username and address are free again."""
        confirmation = validate(PasswordConfirmation, parse_json(body))
        user = self._confirming(claims, client)

        def delete_account() -> None:
            self._confirm(user, confirmation.password, client)
            with self.database.session() as db:
                self.users.delete(db, user.id)
                self.sessions.end_everywhere(user.id, db)
            security_event("account_deleted", user_id=user.id)

        return delete_account

    def change_email(self, claims: Claims, body: bytes, client: str) -> Hashing[UserOut]:
        """Set or remove the caller's e-mail address (confirmed by the password: the address
        receives password resets, so a stolen access token alone must not change it)."""
        change = validate(EmailChange, parse_json(body))
        user = self._confirming(claims, client)

        def change_email() -> UserOut:
            self._confirm(user, change.password, client)
            profile = self.users.set_email(user.id, change.email)
            security_event("email_changed", user_id=user.id)
            return _user_out(profile)

        return change_email

    def request_password_reset(self, body: bytes, client: str) -> None:
        """Send a reset message to the account with this address, if there is one. The answer
        is the same either way, and so is its timing: the lookup and the message happen after
        the response (`PasswordResets.jobs`)."""
        email = validate(PasswordResetRequest, parse_json(body)).email
        self.throttle.count_request(client)
        if self.resets.outbox is None:
            raise NotFound("This service does not send password-reset messages.")
        self.resets.jobs.submit(self._send_reset, email)

    def confirm_password_reset(self, body: bytes, client: str) -> Hashing[None]:
        """Set a new password with a reset token (once), and end every session of its user:
        the token and the policy are checked now, the password hashed when admitted."""
        confirmation = validate(PasswordResetConfirmation, parse_json(body))
        self.throttle.count_request(client)
        token_hash = _reset_hash(confirmation.token)
        now = self.tokens.now()
        with self.database.session() as db:
            reset = db.get(PasswordReset, token_hash)
            found = None if reset is None else db.get(User, reset.user_id)
        if reset is None or found is None or reset.expires_at <= now:
            security_event("password_reset_refused")
            raise InvalidResetToken()
        user = found
        self.users.check_new_password(user, confirmation.new_password)

        def set_password() -> None:
            new_hash = self.users.hasher.hash(confirmation.new_password)
            with self.database.session() as db:
                # Single use: of concurrent confirmations with one token, one deletes it (on
                # the session's connection, whose result has the count of rows deleted).
                use = delete(PasswordReset).where(
                    PasswordReset.token_hash == token_hash, PasswordReset.expires_at > now
                )
                used = db.connection().execute(use).rowcount
                if used != 1:
                    raise InvalidResetToken()
                self.users.set_password_hash(db, user.id, new_hash)
                self.sessions.end_everywhere(user.id, db)
            security_event("password_reset", user_id=user.id)

        return set_password

    def _send_reset(self, email: str) -> None:
        """The reset's work after the response: store a token's hash, queue the message."""
        user = self.users.by_email(email)
        if user is None or user.email is None or self.resets.outbox is None:
            security_event("password_reset_requested", known=False)
            return
        token = secrets.token_urlsafe(32)
        with self.database.session() as db:
            db.add(
                PasswordReset(
                    token_hash=_reset_hash(token),
                    user_id=user.id,
                    expires_at=self.tokens.now() + self.resets.lifetime_seconds,
                )
            )
        self.resets.outbox.submit(self.resets.message(user.email, user.username, token))
        security_event("password_reset_requested", known=True, user_id=user.id)

    def _confirming(self, claims: Claims, client: str) -> User:
        """The caller's user, if they may confirm a change with their password now: guessing
        is throttled as logins are (and counts toward the same limits; `_confirm`)."""
        self.throttle.count_request(client)
        user = self.users.get(user_id_of(claims))
        self.throttle.check_login(user.username_key, client, user_id=user.id)
        return user

    def _confirm(self, user: User, password: str, client: str) -> None:
        """Raise `WrongPassword` unless `password` is the user's, counting it as a failed login."""
        try:
            self.users.check_password(user, password)
        except WrongPassword:
            self.throttle.login_failed(user.username_key, client)
            raise

    def logout(
        self,
        claims: Claims,
        body: bytes,
        cookie_token: str | None = None,
        *,
        content_type: str | None = None,
    ) -> LogoutReport | None:
        """End the session of an authenticated access token (`claims`), then that of the
        refresh token in the body (or a browser client's cookie), if any. Return None when all
        went well, or a report of why the refresh token (or the body: not JSON, or sent as
        another `content_type`) was refused; the access token's session ends anyway."""
        try:
            refresh_token = parse_logout_body(content_type, body).refresh_token or cookie_token
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

    def authenticate(self, token: str) -> Claims:
        """Return the claims of a valid access token that is not revoked; `sub` is the user id.

        No user lookup: for routes that need only who is calling. Any failure is an
        `InvalidToken`. Both steps in one call; async callers run `verify` on the event loop
        (no I/O) and `check_not_revoked` in a thread.
        """
        return self.check_not_revoked(self.verify(token))

    def verify(self, token: str) -> Claims:
        """The claims of a valid access token, revoked or not: signature and claims only, no
        I/O (a token seen before is a memory lookup)."""
        with _refusals_logged():
            return self.tokens.verify_access(token)

    @property
    def revocations_in_memory(self) -> bool:
        """Whether `check_not_revoked` needs no database now (async callers may skip the
        thread hand-off)."""
        return self.sessions.revocations_known

    @property
    def database_is_local(self) -> bool:
        """Whether the database is a SQLite file on this host: a read by primary key takes
        tens of microseconds and WAL mode never makes it wait for a writer, so async callers
        read on the event loop (a thread hand-off costs more than the read). Such a read never
        waits for a lock: it raises `db.WouldWait` instead, and the caller reads in a thread."""
        return self.database.engine.dialect.name == "sqlite"

    @property
    def reads_async(self) -> bool:
        """Whether the reads of the authenticated path (`user_of_async`,
        `check_not_revoked_async`) may wait on the event loop: the database is a server that
        psycopg's async driver reaches, and the app's event loop opened `Database.async_reads`."""
        return self.database.async_reads is not None

    def check_not_revoked_in_memory(self, claims: Claims) -> Claims | None:
        """`check_not_revoked` from the live set in memory, with no I/O: `claims` if it does
        not cover them (`RevokedToken` if it does), or None if the set is not known now (then
        ask the database, on the loop only through `check_not_revoked_async`)."""
        with _refusals_logged():
            revoked = self.sessions.revoked_in_memory(claims)
            if revoked:
                raise RevokedToken()
        return None if revoked is None else claims

    def check_not_revoked(self, claims: Claims) -> Claims:
        """Return `claims` if neither the token nor its login is revoked: from memory, or one
        database read (see `revocations_in_memory`)."""
        with _refusals_logged():
            if self.sessions.is_revoked(claims):
                raise RevokedToken()
        return claims

    async def check_not_revoked_async(self, claims: Claims) -> Claims:
        """`check_not_revoked` on the event loop (see `reads_async`)."""
        with _refusals_logged():
            if await self.sessions.is_revoked_async(claims):
                raise RevokedToken()
        return claims

    def current_user(self, token: str) -> UserOut:
        """Return the user an access token belongs to; any failure is an `InvalidToken`."""
        return self.user_of(self.verify(token))

    def user_of(self, claims: Claims) -> UserOut:
        """The user of verified `claims`, if neither token nor login is revoked: one read
        (the revocations from memory, or, while the set is not known, in the same read)."""
        checked = self.check_not_revoked_in_memory(claims) is not None
        with _refusals_logged():
            return _user_out(self.users.by_subject(claims, check_revoked=not checked))

    async def user_of_async(self, claims: Claims) -> UserOut:
        """`user_of` on the event loop (see `reads_async`)."""
        checked = self.check_not_revoked_in_memory(claims) is not None
        with _refusals_logged():
            return _user_out(await self.users.by_subject_async(claims, check_revoked=not checked))

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


def _live_revocations(
    database: Database, policy: TokenPolicy, listen_url: str | None = None
) -> Revocations | None:
    """On PostgreSQL, the live revocations in memory, kept current by a listener thread on a
    connection of its own: to `listen_url` if given (a direct one, when the database's URL
    goes through a pooler), else to the database's server."""
    if database.engine.dialect.name != "postgresql":
        return None
    window = policy.access_lifetime_seconds + policy.leeway_seconds
    revocations = Revocations(window)
    url = database.engine.url if listen_url is None else make_url(listen_url)
    conninfo = url.set(drivername="postgresql")
    listener = Listener(database, revocations, conninfo.render_as_string(hide_password=False))
    database.on_dispose.append(listener.start().stop)
    return revocations


@contextmanager
def _token_endpoint_errors() -> Iterator[None]:
    """Answer the token endpoint's refusals as RFC 6749 section 5.2 says (errors that are not
    OAuth2's, such as 429 and 503, keep the service's envelope)."""
    try:
        yield
    except ServiceError as exc:
        if exc.oauth_error is None:
            raise
        raise TokenEndpointError(exc) from exc


def _reset_hash(token: str) -> str:
    """What is stored of a reset token: its SHA-256 (the token has 256 random bits, so a fast
    hash is enough; a leaked table holds no usable link)."""
    return hashlib.sha256(token.encode()).hexdigest()


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
    return UserOut(id=str(user.id), username=user.username, email=user.email)


def _token_response(tokens: Tokens) -> TokenResponse:
    response = TokenResponse(access_token=tokens.access.token, expires_in=tokens.access.expires_in)
    if tokens.refresh is not None:
        response.refresh_token = tokens.refresh.token
        response.refresh_expires_in = tokens.refresh.expires_in
    return response
