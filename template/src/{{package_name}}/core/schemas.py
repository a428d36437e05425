"""Request and response bodies of the HTTP contract, shared by both web layers."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from .errors import UnsupportedGrantType, UnsupportedMediaType, ValidationFailed

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
#: What the token endpoint says to a body of another type.
TOKEN_MEDIA_TYPES = f"Send the body as a form (Content-Type: {FORM}) or as JSON ({JSON})."

#: No control characters (NUL included: PostgreSQL cannot store it) in any credential.
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"

Username = Annotated[
    str, StringConstraints(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=256, pattern=PRINTABLE)]
TokenText = Annotated[
    str, StringConstraints(min_length=1, max_length=16384, pattern=r"^[A-Za-z0-9_.=-]+$")
]
AnyCredential = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=PRINTABLE)]
#: An address a reset message can be sent to: one `@`, a dot in the domain, no spaces (whether
#: it receives mail is for the mail server to say).
Email = Annotated[
    str,
    StringConstraints(
        max_length=254, pattern=r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$"
    ),
]


class Body(BaseModel):
    """A request body: a field it does not know is an error, not ignored (a typo says so)."""

    model_config = ConfigDict(extra="forbid")


class Registration(Body):
    """Body of `POST /auth/register`."""

    username: Username
    password: Password
    email: Email | None = None


class GrantType(StrEnum):
    """The OAuth2 grants of the token endpoint (RFC 6749 sections 4.3 and 6)."""

    PASSWORD = "password"  # noqa: S105 - the grant's name, not a secret
    REFRESH_TOKEN = "refresh_token"  # noqa: S105


class LoginForm(BaseModel):
    """The password grant: any non-empty strings, so policy changes never lock anyone out."""

    model_config = ConfigDict(extra="ignore")

    username: AnyCredential
    password: AnyCredential


class UserOut(BaseModel):
    """A user as the API shows it."""

    id: str
    username: str
    email: str | None = None


class PasswordChange(Body):
    """Body of `POST /auth/password`: the current password (any, so a policy change never
    locks anyone out) and the new one (checked by the password policy)."""

    current_password: AnyCredential
    new_password: Password


class PasswordConfirmation(Body):
    """Body of `DELETE /users/me`: the account's password."""

    password: AnyCredential


class EmailChange(Body):
    """Body of `PUT /users/me/email`: the new address (null removes it) and the password."""

    email: Email | None
    password: AnyCredential


class PasswordResetRequest(Body):
    """Body of `POST /auth/password-reset`."""

    email: Email


class PasswordResetConfirmation(Body):
    """Body of `POST /auth/password-reset/confirm`: the token from the message, a new password."""

    token: Annotated[
        str, StringConstraints(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    ]
    new_password: Password


class TokenResponse(BaseModel):
    """Body of a successful login or refresh; the refresh fields only with a refresh strategy."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int
    refresh_token: str | None = None
    refresh_expires_in: int | None = None


class RefreshRequest(BaseModel):
    """The refresh_token grant."""

    refresh_token: TokenText


class ErrorOut(BaseModel):
    """The error envelope of the HTTP contract."""

    detail: str
    code: str


class LogoutReport(BaseModel):
    """Body of a logout whose refresh token was refused: the bearer token and its login were
    revoked all the same; `refresh_token_error` says why the refresh token was not."""

    logged_out: bool = True
    refresh_token_error: ErrorOut


class LogoutRequest(BaseModel):
    """Optional body of `POST /auth/logout`."""

    refresh_token: TokenText | None = None


def describe_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """Turn pydantic's error list into one sentence a person can act on."""
    parts = []
    for error in errors:
        field = ".".join(str(part) for part in error["loc"] if part != "body")
        parts.append(f"{field}: {error['msg']}" if field else error["msg"])
    return "; ".join(parts) + "."


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: object) -> M:
    """Validate `data` against `model`, raising `ValidationFailed` with a readable message."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(describe_errors(exc.errors())) from exc


def parse_json(raw: bytes) -> Any:
    """Parse a JSON request body, raising `ValidationFailed` when it is not JSON.

    ValueError covers malformed JSON, bad UTF-8 and integers too long to convert (over 4,300
    digits); RecursionError, arrays and objects nested too deep to parse.
    """
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValidationFailed("The request body must be a JSON object.") from exc


def media_type_of(content_type: str | None) -> str:
    """The media type of a `Content-Type` header, lower-cased, without its parameters."""
    return (content_type or "").split(";")[0].strip().lower()


def is_json(media_type: str) -> bool:
    """Whether `media_type` is JSON: `application/json`, or a `+json` type."""
    return media_type == JSON or media_type.endswith("+json")


def json_body(content_type: str | None, raw: bytes) -> bytes:
    """`raw`, if it is empty or declared JSON (`application/json`, or `+json`); else raise
    `UnsupportedMediaType` (415): a body sent as `text/plain` or with no type is refused, as
    FastAPI's own parsing would, on both frameworks."""
    if raw.strip() and not is_json(media_type_of(content_type)):
        raise UnsupportedMediaType()
    return raw


def parse_form(raw: bytes) -> dict[str, str]:
    """Parse a URL-encoded form; a parameter sent twice is refused (RFC 6749 section 3.2)."""
    try:
        pairs = parse_qs(raw.decode(), keep_blank_values=True)
    except UnicodeDecodeError as exc:
        raise ValidationFailed("The form must be UTF-8 encoded.") from exc
    repeated = sorted(name for name, values in pairs.items() if len(values) > 1)
    if repeated:
        raise ValidationFailed(f"Send each parameter once; repeated: {', '.join(repeated)}.")
    return {name: values[0] for name, values in pairs.items()}


def parse_token_request(
    content_type: str | None, raw: bytes, grants: tuple[GrantType, ...]
) -> tuple[GrantType, dict[str, Any]]:
    """Parse a token request: RFC 6749's URL-encoded form, where `grant_type` is required, or
    JSON, where it defaults to the first of `grants`. Return the grant and the parameters.
    A body sent as another type, or with none, is refused (415), as everywhere in the API.
    """
    media_type = media_type_of(content_type)
    if media_type == FORM:
        data: Any = parse_form(raw)
        if "grant_type" not in data:
            names = " or ".join(f"grant_type={grant}" for grant in grants)
            raise ValidationFailed(f"grant_type is required in a form: send {names}.")
    else:
        if raw.strip() and not is_json(media_type):
            raise UnsupportedMediaType(TOKEN_MEDIA_TYPES)
        data = parse_json(raw)
        if not isinstance(data, dict):
            raise ValidationFailed("The request body must be a JSON object.")
    grant = data.get("grant_type", grants[0])
    if grant not in [str(known) for known in grants]:
        names = ", ".join(grants)
        raise UnsupportedGrantType(f"grant_type must be {names} here, not {str(grant)[:40]!r}.")
    return GrantType(grant), data


def parse_logout_body(content_type: str | None, raw: bytes) -> LogoutRequest:
    """Parse the optional body of a logout: empty, or JSON with a `refresh_token` (a body sent
    as another type is `UnsupportedMediaType`)."""
    if not raw.strip():
        return LogoutRequest()
    return validate(LogoutRequest, parse_json(json_body(content_type, raw)))
