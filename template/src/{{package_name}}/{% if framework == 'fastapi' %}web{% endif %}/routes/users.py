"""The signed-in user's own resource."""

from fastapi import APIRouter, Response

from ...core.errors import NO_STORE
from ...core.schemas import UserOut
from ..deps import CurrentUser

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me")
async def read_me(user: CurrentUser, response: Response) -> UserOut:
    """Return the user the access token belongs to (never cached: it is personal data)."""
    response.headers.update(NO_STORE)
    return user
