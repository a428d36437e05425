"""The public keys, for services that verify this one's tokens (RFC 7517 JWK Set)."""

from typing import Any

from fastapi import APIRouter, Response

from ..deps import AuthDep

router = APIRouter(tags=["keys"])

# Verifiers may cache the set briefly; a rotation stages the next key before it signs.
CACHE_CONTROL = "public, max-age=300"


@router.get("/.well-known/jwks.json")
async def jwks(auth: AuthDep, response: Response) -> dict[str, Any]:
    """Publish the public keys that verify this service's tokens (404 for HMAC)."""
    response.headers["Cache-Control"] = CACHE_CONTROL
    return auth.jwks()
