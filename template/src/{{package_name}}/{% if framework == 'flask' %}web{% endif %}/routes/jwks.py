"""The public keys, for services that verify this one's tokens (RFC 7517 JWK Set)."""

from typing import Any

from flask import Blueprint

from ..deps import auth_service

bp = Blueprint("jwks", __name__)

# Verifiers may cache the set briefly; a rotation stages the next key before it signs.
CACHE_CONTROL = "public, max-age=300"


@bp.get("/.well-known/jwks.json")
def jwks() -> tuple[dict[str, Any], dict[str, str]]:
    """Publish the public keys that verify this service's tokens (404 for HMAC)."""
    return auth_service().jwks(), {"Cache-Control": CACHE_CONTROL}
