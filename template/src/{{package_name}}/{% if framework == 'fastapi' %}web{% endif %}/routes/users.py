"""The signed-in user's own resource: read it, change its e-mail address, delete it."""

from http import HTTPStatus

from fastapi import APIRouter, Request, Response

from ...core.errors import NO_STORE
from ...core.schemas import EmailChange, PasswordConfirmation, UserOut
from ..deps import AccessClaims, AuthDep, ClientAddress, CurrentUser, errors, hashing
from .auth import json_body

router = APIRouter(prefix="/users", tags=["users"])

CONFIRMATION_ERRORS = errors(
    HTTPStatus.UNAUTHORIZED,
    HTTPStatus.FORBIDDEN,
    HTTPStatus.UNPROCESSABLE_ENTITY,
    HTTPStatus.TOO_MANY_REQUESTS,
    HTTPStatus.SERVICE_UNAVAILABLE,
)


@router.get("/me", responses=errors(HTTPStatus.UNAUTHORIZED, HTTPStatus.SERVICE_UNAVAILABLE))
async def read_me(user: CurrentUser, response: Response) -> UserOut:
    """Return the user the access token belongs to (never cached: it is personal data)."""
    response.headers.update(NO_STORE)
    return user


@router.put(
    "/me/email",
    openapi_extra=json_body(EmailChange),
    responses={**CONFIRMATION_ERRORS, **errors(HTTPStatus.CONFLICT)},
)
async def change_email(
    request: Request, response: Response, claims: AccessClaims, auth: AuthDep, client: ClientAddress
) -> UserOut:
    """Set the address password resets go to (`null` removes it), confirmed by the password:
    409 `email_taken` if another account has it."""
    body = await request.body()
    user = await hashing(request, auth.change_email, claims, body, client)
    response.headers.update(NO_STORE)
    return user


@router.delete(
    "/me",
    status_code=204,
    openapi_extra=json_body(PasswordConfirmation),
    responses=CONFIRMATION_ERRORS,
)
async def delete_me(
    request: Request, claims: AccessClaims, auth: AuthDep, client: ClientAddress
) -> Response:
    """Delete the account, confirmed by its password: every session ends, and the username
    and address can be registered again."""
    await hashing(request, auth.delete_account, claims, await request.body(), client)
    return Response(status_code=204)
