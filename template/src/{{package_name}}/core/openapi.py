"""The OpenAPI description of the HTTP contract, built here once for both web layers.

Both frameworks serve this document at `/openapi.json` (FastAPI adds the routes of
`web/routes/custom.py` it generates itself), so the description cannot drift between them: it
is made from the same schemas the service parses and answers with, it lists every status a
route can answer in the envelope it answers with, and a route a variant does not have (refresh
without a refresh strategy, password reset without mail, the JWK Set with HMAC) is absent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .. import claims as project
from .cookies import HEADER as BROWSER_HEADER
from .schemas import (
    FORM,
    EmailChange,
    ErrorOut,
    GrantType,
    LoginForm,
    LogoutReport,
    LogoutRequest,
    PasswordChange,
    PasswordConfirmation,
    PasswordResetConfirmation,
    PasswordResetRequest,
    RefreshRequest,
    Registration,
    TokenResponse,
    UserOut,
)

#: The security scheme's name: Swagger UI's Authorize button logs in at the token endpoint.
SCHEME = "OAuth2PasswordBearer"
LOGIN_PATH = "/auth/login"
JSON = "application/json"
REF = "#/components/schemas/{model}"


class OAuthErrorOut(BaseModel):
    """The token endpoint's error (RFC 6749 section 5.2), with the service's own fields."""

    error: str
    error_description: str
    detail: str
    code: str


class StatusOut(BaseModel):
    """A probe's answer."""

    status: str


#: What a route does with the refresh-token cookie (`Route.cookie`); "" for nothing.
CookieUse = Literal["", "set", "read+set", "clear"]


@dataclass(frozen=True)
class Features:
    """What a running service offers: routes it does not offer are not described."""

    refresh: bool
    password_reset: bool
    jwks: bool
    #: The refresh-token cookie's name in cookie mode (`REFRESH_TOKEN_COOKIE`), else None.
    cookie: str | None = None


@dataclass(frozen=True)
class Route:
    """One operation: its request, its answers (status: body model or None) and errors."""

    method: str
    path: str
    summary: str
    tag: str
    answers: dict[int, type[BaseModel] | None]
    errors: tuple[int, ...] = ()
    body: type[BaseModel] | dict[str, Any] | None = None
    body_required: bool = True
    secured: bool = False
    token_endpoint: bool = False
    headers: dict[int, dict[str, str]] = field(default_factory=dict)
    #: Whether a non-empty body of another type than the route takes is answered 415.
    refuses_other_types: bool = True
    #: In cookie mode: the route sets the refresh-token cookie ("set"), reads and sets it
    #: ("read+set") or reads and deletes it ("clear"), for requests with `X-Requested-With`.
    cookie: CookieUse = ""


#: A request the client could have sent better: 400 (e.g. two `Authorization` headers).
BAD, UNAUTHORIZED, FORBIDDEN, CONFLICT, TOO_LARGE, INVALID, THROTTLED, UNAVAILABLE = (
    400,
    401,
    403,
    409,
    413,
    422,
    429,
    503,
)
UNSUPPORTED = 415
#: The JWK Set's answer: public keys, each with `kty` and the members `core.keys` always adds.
JWK_SET: dict[str, Any] = {
    "type": "object",
    "required": ["keys"],
    "properties": {
        "keys": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["kty", "kid", "alg", "use"],
                "additionalProperties": {"type": "string"},
            },
        }
    },
}
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


#: The model each grant's parameters are validated with: the description takes their fields.
GRANT_MODELS: dict[GrantType, type[BaseModel]] = {
    GrantType.PASSWORD: LoginForm,
    GrantType.REFRESH_TOKEN: RefreshRequest,
}


def grant_fields(grant: GrantType) -> dict[str, Any]:
    """The parameters of `grant`, as the model the service validates them with says (lengths
    and patterns), without pydantic's titles."""
    properties = GRANT_MODELS[grant].model_json_schema()["properties"]
    return {
        name: {key: value for key, value in field.items() if key != "title"}
        for name, field in properties.items()
    }


def token_body(*grants: GrantType, cookie: bool = False) -> dict[str, Any]:
    """The request body of a token endpoint that offers `grants` (RFC 6749): a form with
    `grant_type`, whose parameters (others are ignored) are strings sent once each (section
    3.2), or JSON where `grant_type` may be left out for the first grant only (a body without
    it is that grant's). In cookie mode (`cookie`) the refresh grant may leave its
    `refresh_token` to the cookie."""

    def schema(is_form: bool) -> dict[str, Any]:
        variants = []
        for index, grant in enumerate(grants):
            fields = grant_fields(grant)
            named = is_form or index > 0
            in_cookie = cookie and grant is GrantType.REFRESH_TOKEN
            variant = {
                "type": "object",
                "required": (["grant_type"] if named else []) + ([] if in_cookie else list(fields)),
                "properties": {"grant_type": {"type": "string", "enum": [grant.value]}, **fields},
            }
            if is_form:
                variant["additionalProperties"] = {"type": "string"}
            variants.append(variant)
        return variants[0] if len(variants) == 1 else {"oneOf": variants}

    return {FORM: {"schema": schema(True)}, JSON: {"schema": schema(False)}}


def routes(features: Features) -> list[Route]:
    """Every route of the contract this service offers, in the order the README lists them."""
    login_grants = (GrantType.PASSWORD,) + ((GrantType.REFRESH_TOKEN,) if features.refresh else ())
    cookie = features.cookie is not None
    token_errors = (BAD, TOO_LARGE, THROTTLED, UNAVAILABLE)
    confirmed = (BAD, UNAUTHORIZED, FORBIDDEN, TOO_LARGE, INVALID, THROTTLED, UNAVAILABLE)
    table = [
        Route(
            "get", "/health", "Liveness: the process serves requests", "health", {200: StatusOut}
        ),
        Route(
            "get",
            "/health/ready",
            "Readiness: the database answers and has this code's schema",
            "health",
            {200: StatusOut},
            (UNAVAILABLE,),
        ),
        Route(
            "post",
            "/auth/register",
            "Create a user (the password must not be easy to guess)",
            "auth",
            {201: UserOut},
            (CONFLICT, TOO_LARGE, INVALID, THROTTLED, UNAVAILABLE),
            Registration,
        ),
        Route(
            "post",
            LOGIN_PATH,
            "The OAuth2 token endpoint: log in (password grant) or refresh",
            "auth",
            {200: TokenResponse},
            token_errors,
            token_body(*login_grants, cookie=cookie),
            token_endpoint=True,
            cookie="read+set",
        ),
    ]
    if features.refresh:
        table.append(
            Route(
                "post",
                "/auth/refresh",
                "Exchange a refresh token for new tokens",
                "auth",
                {200: TokenResponse},
                token_errors,
                token_body(GrantType.REFRESH_TOKEN, cookie=cookie),
                # A browser client's refresh needs no body: the cookie is the refresh token.
                body_required=not cookie,
                token_endpoint=True,
                cookie="read+set",
            )
        )
    table += [
        Route(
            "post",
            "/auth/logout",
            "End the bearer token's login (and the refresh token's, if sent)",
            "auth",
            {204: None, 200: LogoutReport},
            (BAD, UNAUTHORIZED, TOO_LARGE, UNAVAILABLE),
            LogoutRequest,
            body_required=False,
            secured=True,
            # A body it cannot use is reported in the 200, as a refused refresh token is.
            refuses_other_types=False,
            cookie="clear",
        ),
        Route(
            "post",
            "/auth/logout-all",
            "End every session of the user, on every device",
            "auth",
            {204: None},
            (BAD, UNAUTHORIZED, UNAVAILABLE),
            secured=True,
        ),
        Route(
            "post",
            "/auth/password",
            "Change the password; every session ends, a new login's tokens are the answer",
            "auth",
            {200: TokenResponse},
            confirmed,
            PasswordChange,
            secured=True,
            headers={200: NO_STORE},
            cookie="set",
        ),
    ]
    if features.password_reset:
        table += [
            Route(
                "post",
                "/auth/password-reset",
                "Send a password-reset message to this address, if an account has it",
                "auth",
                {202: None},
                (TOO_LARGE, INVALID, THROTTLED, UNAVAILABLE),
                PasswordResetRequest,
            ),
            Route(
                "post",
                "/auth/password-reset/confirm",
                "Set a new password with the token from a reset message",
                "auth",
                {204: None},
                (BAD, TOO_LARGE, INVALID, THROTTLED, UNAVAILABLE),
                PasswordResetConfirmation,
            ),
        ]
    table += [
        Route(
            "get",
            "/users/me",
            "The user the access token belongs to",
            "users",
            {200: UserOut},
            (BAD, UNAUTHORIZED, UNAVAILABLE),
            secured=True,
            headers={200: NO_STORE},
        ),
        Route(
            "put",
            "/users/me/email",
            "Set or remove the address password resets go to",
            "users",
            {200: UserOut},
            (*confirmed, CONFLICT),
            EmailChange,
            secured=True,
            headers={200: NO_STORE},
        ),
        Route(
            "delete",
            "/users/me",
            "Delete the account; its sessions end and its name is free again",
            "users",
            {204: None},
            confirmed,
            PasswordConfirmation,
            secured=True,
        ),
    ]
    if features.jwks:
        table.append(
            Route(
                "get",
                "/.well-known/jwks.json",
                "The public keys that verify this service's tokens (RFC 7517)",
                "keys",
                {200: None},
            )
        )
    return table


def document(features: Features, title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the contract, for a service with `features`."""
    table = routes(features)
    models: set[type[BaseModel]] = {ErrorOut, OAuthErrorOut}
    for route in table:
        models.update(m for m in route.answers.values() if m is not None)
        if isinstance(route.body, type):
            models.add(route.body)
    ordered = sorted(models, key=lambda model: model.__name__)
    _, schemas = models_json_schema(
        [(model, "serialization") for model in ordered], ref_template=REF
    )
    paths: dict[str, dict[str, Any]] = {}
    for route in table:
        paths.setdefault(route.path, {})[route.method] = _operation(route, features.cookie)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                SCHEME: {
                    "type": "oauth2",
                    "flows": {"password": {"scopes": dict(project.SCOPES), "tokenUrl": LOGIN_PATH}},
                }
            },
        },
    }


def with_contract_errors(operation: dict[str, Any]) -> dict[str, Any]:
    """`operation` (one of your routes, as a framework describes it) with the errors the service
    answers there in its envelope: 422 in `{detail, code}` (not FastAPI's list), and with a
    bearer token (`security`) 400, 401 with its challenge, 403 if it needs scopes and 503; a
    route with a body may also be refused 413. Statuses you described yourself are kept."""
    responses = operation.setdefault("responses", {})
    if str(INVALID) in responses:
        responses[str(INVALID)] = _response(INVALID, ErrorOut, None)
    statuses: list[int] = []
    requirements = operation.get("security") or []
    if requirements:
        scoped = any(scopes for requirement in requirements for scopes in requirement.values())
        statuses += [BAD, UNAUTHORIZED, *((FORBIDDEN,) if scoped else ()), UNAVAILABLE]
    if "requestBody" in operation:
        statuses.append(TOO_LARGE)
    for status in statuses:
        responses.setdefault(str(status), _response(status, ErrorOut, None))
    return operation


def _operation(route: Route, cookie: str | None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": [route.tag],
        "summary": route.summary,
        "operationId": f"{route.method}_{route.path.strip('/').replace('/', '_')}".replace(
            "-", "_"
        ).replace(".", "_"),
        "responses": {},
    }
    if route.body is not None:
        content = (
            route.body
            if isinstance(route.body, dict)
            else {JSON: {"schema": {"$ref": REF.format(model=route.body.__name__)}}}
        )
        operation["requestBody"] = {"required": route.body_required, "content": content}
    if route.secured:
        operation["security"] = [{SCHEME: []}]
    for status, model in route.answers.items():
        operation["responses"][str(status)] = _response(status, model, route.headers.get(status))
    error = OAuthErrorOut if route.token_endpoint else ErrorOut
    # A body sent as another type than the route takes is refused: 415.
    refused = route.body is not None and route.refuses_other_types
    for status in (*route.errors, *((UNSUPPORTED,) if refused else ())):
        # The token endpoint answers its refusals as OAuth2 errors; 413, 415, 429 and 503 are
        # not OAuth2's and keep the service's envelope.
        model = error if status == BAD else ErrorOut
        operation["responses"][str(status)] = _response(status, model, None)
    if route.token_endpoint:
        operation["responses"]["200"]["headers"] = _headers(NO_STORE)
    if cookie is not None and route.cookie:
        _describe_cookie(operation, route.cookie, cookie)
    return operation


def _describe_cookie(operation: dict[str, Any], use: CookieUse, name: str) -> None:
    """Cookie mode (`cookies`): the header that asks for it, the cookie a route reads, and the
    `Set-Cookie` of its successful answers."""
    parameters = operation.setdefault("parameters", [])
    parameters.append(
        {
            "name": BROWSER_HEADER,
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "Sent by a page's script (any value): the refresh token travels in "
            "an HttpOnly cookie instead of the JSON body. Also the CSRF defence: the cookie is "
            "read only from requests with this header.",
        }
    )
    if use in ("read+set", "clear"):
        parameters.append(
            {
                "name": name,
                "in": "cookie",
                "required": False,
                "schema": {"type": "string"},
                "description": "The refresh token of a browser client, read only with "
                f"{BROWSER_HEADER}; a refresh token in the body takes precedence.",
            }
        )
    what = "Deletes" if use == "clear" else "Stores the refresh token in"
    set_cookie = {
        "Set-Cookie": f"{what} the HttpOnly cookie {name} (Path=/auth, SameSite=Strict), for "
        f"requests with {BROWSER_HEADER}."
    }
    for status, response in operation["responses"].items():
        if status.startswith("2"):
            response["headers"] = {**response.get("headers", {}), **_headers(set_cookie)}


def _response(
    status: int, model: type[BaseModel] | None, headers: dict[str, str] | None
) -> dict[str, Any]:
    response: dict[str, Any] = {"description": HTTPStatus(status).phrase}
    if model is not None:
        response["content"] = {JSON: {"schema": {"$ref": REF.format(model=model.__name__)}}}
    elif status == 200:  # the JWK Set (RFC 7517 section 5)
        response["content"] = {JSON: {"schema": JWK_SET}}
    if status in (THROTTLED, UNAVAILABLE):
        headers = {**(headers or {}), "Retry-After": "seconds"}
    if status == UNAUTHORIZED:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    if headers:
        response["headers"] = _headers(headers)
    return response


def _headers(headers: dict[str, str]) -> dict[str, Any]:
    return {name: {"schema": {"type": "string"}, "description": v} for name, v in headers.items()}
