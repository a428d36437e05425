"""The signed-in user's own resource: read it, change its e-mail address, delete it."""

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from ...core.errors import NO_STORE
from ...core.schemas import UserOut
from ..deps import (
    AccessClaims,
    AuthDep,
    ClientAddress,
    CurrentUser,
    hashing,
    json_request_body,
)

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me")
async def read_me(user: CurrentUser, response: Response) -> UserOut:
    """Return the user the access token belongs to (never cached: it is personal data)."""
    response.headers.update(NO_STORE)
    return user


@router.put("/me/email")
async def change_email(
    request: Request, response: Response, claims: AccessClaims, auth: AuthDep, client: ClientAddress
) -> UserOut:
    """Set the address password resets go to (`null` removes it), confirmed by the password:
    409 `email_taken` if another account has it."""
    body = await json_request_body(request)
    user = await hashing(request, await run_in_threadpool(auth.change_email, claims, body, client))
    response.headers.update(NO_STORE)
    return user


@router.delete("/me", status_code=204)
async def delete_me(
    request: Request, claims: AccessClaims, auth: AuthDep, client: ClientAddress
) -> Response:
    """Delete the account, confirmed by its password: every session ends, and the username
    and address can be registered again."""
    body = await json_request_body(request)
    await hashing(request, await run_in_threadpool(auth.delete_account, claims, body, client))
    return Response(status_code=204)
