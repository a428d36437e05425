"""One error tree for the service, and how each error looks over HTTP.

Every error a client can cause derives from `ServiceError` and carries a stable
`code`. `problem_for` turns any of them (or a bare HTTP status raised by the
framework) into the status, JSON body and headers of the HTTP contract, so the
Flask and FastAPI layers share one mapping. At the token endpoint (login, refresh)
errors take RFC 6749's form instead (`TokenEndpointError`), which OAuth2 clients read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus


class ConfigError(Exception):
    """Raised when settings or key material are missing or unsafe; the message says what to fix."""


class SchemaError(ConfigError):
    """Raised when the database's schema is not one this code can use; the message says what
    to run."""


class ServiceError(Exception):
    """Base of every error a client can cause; `code` is stable, `detail` is for people."""

    code = "service_error"
    status = HTTPStatus.BAD_REQUEST
    detail = "The request could not be processed."
    #: RFC 6749 section 5.2's `error` when the token endpoint raises this; None: not an
    #: OAuth2 error, answered in the service's own envelope there too.
    oauth_error: str | None = None
    #: Seconds a client should wait before trying again (the `Retry-After` header), if any.
    retry_after: int | None = None

    def __init__(self, detail: str | None = None, *, retry_after: int | None = None) -> None:
        super().__init__(detail or self.detail)
        self.detail = detail or self.detail
        if retry_after is not None:
            self.retry_after = retry_after


class ValidationFailed(ServiceError):
    """Raised when a request body is malformed or breaks a field rule."""

    code = "validation_error"
    status = HTTPStatus.UNPROCESSABLE_ENTITY
    detail = "The request body is invalid."
    oauth_error = "invalid_request"


class MissingRefreshToken(ValidationFailed):
    """Raised when a refresh names no refresh token at all (no body, and no cookie)."""

    detail = (
        'No refresh token was sent: send it in the body (JSON {"refresh_token"} or RFC 6749\'s '
        "form) or, from a browser in cookie mode, in the cookie; without one, log in again."
    )


class WeakPassword(ValidationFailed):
    """Raised when a new password is too easy to guess (`password_policy`); the detail says why
    and what to do instead."""

    code = "weak_password"
    detail = "This password is too easy to guess; choose a longer, less common one."


class UnsupportedMediaType(ServiceError):
    """Raised when a JSON body is sent with another `Content-Type` (or none)."""

    code = "unsupported_media_type"
    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    detail = "Send the body as JSON, with Content-Type: application/json."


class BodyTooLarge(ServiceError):
    """Raised when a request body is over the bound (`MAX_BODY_BYTES`), before it is read."""

    code = "body_too_large"
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    detail = "The request body is too large for this service."

    @classmethod
    def over(cls, limit: int) -> BodyTooLarge:
        """The error for a body over `limit` bytes, saying the limit."""
        return cls(f"The request body is larger than {limit} bytes; send less.")


class ServiceUnavailable(ServiceError):
    """Raised when the database does not answer in time; the client may try again later."""

    code = "service_unavailable"
    status = HTTPStatus.SERVICE_UNAVAILABLE
    detail = "The service cannot reach its database right now; try again in a few seconds."
    retry_after = 5


class TooManyRequests(ServiceError):
    """Raised when a client or an account is throttled (`throttle`); `retry_after` says when
    to try again."""

    code = "too_many_requests"
    status = HTTPStatus.TOO_MANY_REQUESTS
    detail = "Too many attempts; wait before trying again."
    retry_after = 1


class UnsupportedGrantType(ServiceError):
    """Raised when the token endpoint is asked for a grant it does not offer."""

    code = "unsupported_grant_type"
    status = HTTPStatus.BAD_REQUEST
    detail = "The grant_type is not supported here."
    oauth_error = "unsupported_grant_type"


class NotFound(ServiceError):
    """Raised when a resource this service could have does not exist in this configuration."""

    code = "not_found"
    status = HTTPStatus.NOT_FOUND
    detail = "Not Found."


class UsernameTaken(ServiceError):
    """Raised when registering a username that exists, ignoring case."""

    code = "username_taken"
    status = HTTPStatus.CONFLICT
    detail = "That username is already taken."


class EmailTaken(ServiceError):
    """Raised when an e-mail address belongs to another user already (ignoring case)."""

    code = "email_taken"
    status = HTTPStatus.CONFLICT
    detail = "This e-mail address is used by another account."


class InvalidResetToken(ServiceError):
    """Raised when a password-reset token is unknown, used or expired."""

    code = "invalid_reset_token"
    status = HTTPStatus.BAD_REQUEST
    detail = "This password-reset link is invalid, used or expired; ask for a new one."


class AuthError(ServiceError):
    """Base of every authentication failure: a 401 (a 400 for a malformed request) with a
    Bearer challenge."""

    code = "not_authenticated"
    status = HTTPStatus.UNAUTHORIZED
    detail = "Authentication is required."

    def challenge(self) -> str:
        """Return the `WWW-Authenticate` value for this failure (RFC 6750 section 3)."""
        return "Bearer"

    def _challenge_with(self, error: str) -> str:
        """A challenge naming RFC 6750's `error` and describing it with `detail`."""
        description = self.detail.replace("\\", "").replace('"', "'")
        return f'Bearer error="{error}", error_description="{description}"'


class InvalidRequest(AuthError):
    """Raised when the credentials are sent in a malformed way (RFC 6750 section 3.1)."""

    code = "invalid_request"
    status = HTTPStatus.BAD_REQUEST
    detail = "The Authorization header is malformed."

    def challenge(self) -> str:
        """Return the challenge with `error="invalid_request"` and a description."""
        return self._challenge_with("invalid_request")


class InsufficientScope(AuthError):
    """Raised when a valid access token lacks a scope the route requires (RFC 6750 section
    3.1: 403, and the challenge names the scopes needed)."""

    code = "insufficient_scope"
    status = HTTPStatus.FORBIDDEN

    def __init__(self, needed: Sequence[str]) -> None:
        self.scopes = " ".join(sorted(needed))
        super().__init__(f"This needs the scope {self.scopes}; the token does not carry it.")

    def challenge(self) -> str:
        """The challenge with `error="insufficient_scope"` and the `scope` needed."""
        return f'{self._challenge_with("insufficient_scope")}, scope="{self.scopes}"'


class MissingToken(AuthError):
    """Raised when a protected route gets no bearer token at all."""

    detail = "Send an access token in the Authorization header: Bearer <token>."


class InvalidCredentials(AuthError):
    """Raised when a username and password do not match a user."""

    code = "invalid_credentials"
    detail = "Incorrect username or password."
    oauth_error = "invalid_grant"


class AccountDisabled(AuthError):
    """Raised when a disabled user logs in or refreshes (after the password or token checked
    out, so it tells nothing to someone without them)."""

    code = "account_disabled"
    status = HTTPStatus.FORBIDDEN
    detail = "This account is disabled; ask the service's operators."
    oauth_error = "invalid_grant"


class WrongPassword(ServiceError):
    """Raised when an authenticated request confirms itself with the wrong current password
    (403, not 401: the bearer token is fine, and clients must not drop it)."""

    code = "wrong_password"
    status = HTTPStatus.FORBIDDEN
    detail = "The current password is not correct."


class InvalidToken(AuthError):
    """Raised when a token was sent but is malformed, forged, of the wrong kind or revoked."""

    code = "invalid_token"
    detail = "The token is invalid."
    oauth_error = "invalid_grant"

    def challenge(self) -> str:
        """Return the challenge with `error="invalid_token"` and a description."""
        return self._challenge_with("invalid_token")


class ExpiredToken(InvalidToken):
    """Raised when a token's `exp` has passed."""

    code = "token_expired"
    detail = "The token has expired."


class RevokedToken(InvalidToken):
    """Raised when a token, or the login session it belongs to, was revoked (logout, reuse)."""

    detail = "The token has been revoked."


class RefreshTokenReused(InvalidToken):
    """Raised when a rotated refresh token comes back: it leaked, so its session is revoked."""

    code = "refresh_token_reused"
    detail = "This refresh token was already used, so every token of its login was revoked. Log in again."


class UnknownUser(InvalidToken):
    """Raised when a validly signed token names a user that no longer exists."""

    detail = "The token's user no longer exists."


class TokenEndpointError(ServiceError):
    """Raised when the token endpoint refuses a request: RFC 6749 section 5.2's 400 with
    `error` and `error_description`, keeping the service's `code` and `detail` beside them."""

    status = HTTPStatus.BAD_REQUEST

    def __init__(self, cause: ServiceError) -> None:
        super().__init__(cause.detail)
        self.code = cause.code
        self.oauth_error = cause.oauth_error


#: Headers of every response that carries tokens or user data (RFC 6749 section 5.1).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(frozen=True)
class Problem:
    """An error response as data: status, JSON body and extra headers."""

    status: int
    body: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)


def problem_for(error: ServiceError) -> Problem:
    """Describe a service error as the HTTP contract's error response."""
    body = {"detail": error.detail, "code": error.code}
    if isinstance(error, TokenEndpointError) and error.oauth_error:
        body = {"error": error.oauth_error, "error_description": error.detail, **body}
        return Problem(int(error.status), body, dict(NO_STORE))
    headers = {"WWW-Authenticate": error.challenge()} if isinstance(error, AuthError) else {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return Problem(int(error.status), body, headers)


def problem_for_status(status: int) -> Problem:
    """Describe a framework-raised HTTP status (404, 405, 500, ...) in the same envelope."""
    if status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
        return problem_for(BodyTooLarge())
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        detail, code = "The server failed to handle the request.", "internal_error"
    else:
        phrase = HTTPStatus(status).phrase
        detail, code = f"{phrase}.", phrase.lower().replace(" ", "_").replace("-", "_")
    return Problem(status, {"detail": detail, "code": code})
