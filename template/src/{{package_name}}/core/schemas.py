"""Request and response bodies of the HTTP contract, shared by both web layers."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from .errors import ValidationFailed

Username = Annotated[
    str, StringConstraints(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=256)]
TokenText = Annotated[str, StringConstraints(min_length=1, max_length=16384)]


class Registration(BaseModel):
    """Body of `POST /auth/register`."""

    model_config = ConfigDict(extra="forbid")

    username: Username
    password: Password


class LoginForm(BaseModel):
    """Body of `POST /auth/login`: any non-empty strings, so policy changes never lock anyone out."""

    model_config = ConfigDict(extra="ignore")

    username: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class UserOut(BaseModel):
    """A user as the API shows it."""

    id: str
    username: str


class TokenResponse(BaseModel):
    """Body of a successful login or refresh; the refresh fields only with a refresh strategy."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int
    refresh_token: str | None = None
    refresh_expires_in: int | None = None


class RefreshRequest(BaseModel):
    """Body of `POST /auth/refresh`."""

    refresh_token: TokenText


class LogoutRequest(BaseModel):
    """Optional body of `POST /auth/logout`."""

    refresh_token: TokenText | None = None


def describe_errors(errors: list[dict[str, Any]]) -> str:
    """Turn pydantic's error list into one sentence a person can act on."""
    parts = []
    for error in errors:
        field = ".".join(str(part) for part in error["loc"] if part != "body")
        parts.append(f"{field}: {error['msg']}" if field else error["msg"])
    return "; ".join(parts) + "."


def validate(model: type[BaseModel], data: Any) -> Any:
    """Validate `data` against `model`, raising `ValidationFailed` with a readable message."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(describe_errors(exc.errors())) from exc


def parse_json(raw: bytes) -> Any:
    """Parse a JSON request body, raising `ValidationFailed` when it is not JSON."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationFailed("The request body must be a JSON object.") from exc


def parse_login_body(content_type: str | None, raw: bytes) -> Any:
    """Parse a login body: the OAuth2 password flow's URL-encoded form, or JSON."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        return parse_json(raw)
    try:
        return {key: values[0] for key, values in parse_qs(raw.decode()).items()}
    except UnicodeDecodeError as exc:
        raise ValidationFailed("The form must be UTF-8 encoded.") from exc


def parse_logout_body(raw: bytes) -> LogoutRequest:
    """Parse the optional body of a logout: empty, or JSON with a `refresh_token`."""
    return validate(LogoutRequest, parse_json(raw)) if raw.strip() else LogoutRequest()
