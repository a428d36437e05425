"""The signed-in user's own resource."""

from fastapi import APIRouter

from ...core.schemas import UserOut
from ..deps import CurrentUser

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me")
async def read_me(user: CurrentUser) -> UserOut:
    """Return the user the access token belongs to."""
    return user
