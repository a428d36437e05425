"""Cross-origin requests from browsers (CORS): which page origins may call the API.

Off by default: with no `CORS_ALLOWED_ORIGINS`, no response carries a CORS header and browsers
keep pages of other origins from reading any answer. Allowed origins are compared exactly
(`https://app.example.com`); `*` allows every origin. Credentials (cookies) are allowed only
with the refresh-token cookie (`REFRESH_TOKEN_COOKIE`, see `cookies`), and never with `*`
(the settings refuse that pair). The JWK Set holds public keys only and is readable from any
origin, whatever the setting (never with credentials).
"""

from __future__ import annotations

from dataclasses import dataclass

#: The methods and request headers the API uses; a preflight asking for others gets no grant.
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE")
HEADERS = ("authorization", "content-type", "x-requested-with")
#: Headers a page may read besides the simple ones: the challenge, and when to retry.
EXPOSED = "WWW-Authenticate, Retry-After"
PUBLIC_PATHS = ("/.well-known/jwks.json",)
#: How long a browser may cache a preflight's answer, in seconds.
MAX_AGE = "600"


@dataclass(frozen=True)
class CorsPolicy:
    """The origins allowed to call the API from a browser."""

    origins: frozenset[str] = frozenset()
    #: Whether allowed origins may send cookies (the refresh-token cookie is on).
    credentials: bool = False

    @classmethod
    def from_setting(cls, value: str | None, credentials: bool = False) -> CorsPolicy:
        """Parse `CORS_ALLOWED_ORIGINS`: origins separated by commas or spaces."""
        parts = (value or "").replace(",", " ").split()
        return cls(frozenset(part.rstrip("/") for part in parts), credentials)

    def _credentials(self, allowed: str) -> dict[str, str]:
        if self.credentials and allowed != "*":
            return {"Access-Control-Allow-Credentials": "true"}
        return {}

    def allowed_origin(self, origin: str | None, path: str) -> str | None:
        """The value of `Access-Control-Allow-Origin` for this request, or None for none."""
        if origin is None:
            return None
        if path in PUBLIC_PATHS or "*" in self.origins:
            return "*"
        return origin if origin in self.origins else None

    def response_headers(self, origin: str | None, path: str) -> dict[str, str]:
        """Headers to add to an ordinary response."""
        allowed = self.allowed_origin(origin, path)
        if allowed is None:
            return {}
        headers = {"Access-Control-Allow-Origin": allowed, "Access-Control-Expose-Headers": EXPOSED}
        if allowed != "*":
            headers["Vary"] = "Origin"  # the answer depends on who asks
        return {**headers, **self._credentials(allowed)}

    def preflight_headers(
        self, origin: str | None, path: str, method: str, headers: str | None
    ) -> dict[str, str]:
        """Headers of the answer to a preflight (`OPTIONS` with `Access-Control-Request-Method`);
        none when the origin, the method or a header is not allowed."""
        allowed = self.allowed_origin(origin, path)
        asked = {name.strip().lower() for name in (headers or "").split(",") if name.strip()}
        if allowed is None or method.upper() not in METHODS or not asked <= set(HEADERS):
            return {"Vary": "Origin"}
        return {
            "Access-Control-Allow-Origin": allowed,
            "Access-Control-Allow-Methods": ", ".join(METHODS),
            "Access-Control-Allow-Headers": ", ".join(HEADERS),
            "Access-Control-Max-Age": MAX_AGE,
            "Vary": "Origin",
            **self._credentials(allowed),
        }
