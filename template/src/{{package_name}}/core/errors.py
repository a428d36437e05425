"""One error tree for the service, and how each error looks over HTTP.

Every error a client can cause derives from `ServiceError` and carries a stable
`code`. `problem_for` turns any of them (or a bare HTTP status raised by the
framework) into the status, JSON body and headers of the HTTP contract, so the
Flask and FastAPI layers share one mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus


class ConfigError(Exception):
    """Raised when settings or key material are missing or unsafe; the message says what to fix."""


class ServiceError(Exception):
    """Base of every error a client can cause; `code` is stable, `detail` is for people."""

    code = "service_error"
    status = HTTPStatus.BAD_REQUEST
    detail = "The request could not be processed."

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.detail)
        self.detail = detail or self.detail


class ValidationFailed(ServiceError):
    """Raised when a request body is malformed or breaks a field rule."""

    code = "validation_error"
    status = HTTPStatus.UNPROCESSABLE_ENTITY
    detail = "The request body is invalid."


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


class AuthError(ServiceError):
    """Base of every authentication failure; always a 401 with a Bearer challenge."""

    code = "not_authenticated"
    status = HTTPStatus.UNAUTHORIZED
    detail = "Authentication is required."

    def challenge(self) -> str:
        """Return the `WWW-Authenticate` value for this failure (RFC 6750 section 3)."""
        return "Bearer"


class MissingToken(AuthError):
    """Raised when a protected route gets no bearer token at all."""

    detail = "Send an access token in the Authorization header: Bearer <token>."


class InvalidCredentials(AuthError):
    """Raised when a username and password do not match a user."""

    code = "invalid_credentials"
    detail = "Incorrect username or password."


class InvalidToken(AuthError):
    """Raised when a token was sent but is malformed, forged, of the wrong kind or revoked."""

    code = "invalid_token"
    detail = "The token is invalid."

    def challenge(self) -> str:
        """Return the challenge with `error="invalid_token"` and a description."""
        description = self.detail.replace("\\", "").replace('"', "'")
        return f'Bearer error="invalid_token", error_description="{description}"'


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


@dataclass(frozen=True)
class Problem:
    """An error response as data: status, JSON body and extra headers."""

    status: int
    body: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)


def problem_for(error: ServiceError) -> Problem:
    """Describe a service error as the HTTP contract's error response."""
    headers = {"WWW-Authenticate": error.challenge()} if isinstance(error, AuthError) else {}
    return Problem(int(error.status), {"detail": error.detail, "code": error.code}, headers)


def problem_for_status(status: int) -> Problem:
    """Describe a framework-raised HTTP status (404, 405, 500, ...) in the same envelope."""
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        detail, code = "The server failed to handle the request.", "internal_error"
    else:
        phrase = HTTPStatus(status).phrase
        detail, code = f"{phrase}.", phrase.lower().replace(" ", "_").replace("-", "_")
    return Problem(status, {"detail": detail, "code": code})
