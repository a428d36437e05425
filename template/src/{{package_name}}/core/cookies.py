"""The refresh token in a cookie, for browser clients (`REFRESH_TOKEN_COOKIE`).

A page should not keep a refresh token where its scripts can read it (an XSS steals it from
`localStorage`). With the setting on, a request that says it comes from a page's script, by
sending the header `X-Requested-With` (any value), gets its refresh token in an `HttpOnly`
cookie instead of the JSON body, and refresh and logout read it from there. Requests without
the header use the body as before, so OAuth2 clients and other services are unaffected.

Cross-site request forgery (OWASP's CSRF cheat sheet, "custom request headers"): the cookie is
read only from requests that carry that header. A form on another site cannot send a header,
and a script on another origin can send one only after a CORS preflight, which the service
grants to `CORS_ALLOWED_ORIGINS` alone. `SameSite=Strict` keeps the cookie off requests from
other sites as a second layer (the page and the API must then be the same site, e.g.
`app.example.com` and `api.example.com`). The cookie is scoped to `/auth`: sent to the token
endpoint, refresh, logout and password change, never to your own routes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie

#: The header a page's script sends to ask for the cookie transport.
HEADER = "X-Requested-With"
PATH = "/auth"


@dataclass(frozen=True)
class RefreshCookie:
    """How the refresh-token cookie is named, scoped and protected."""

    #: `Secure` (and the `__Secure-` name prefix) everywhere but development, on plain HTTP.
    secure: bool

    @property
    def name(self) -> str:
        """The cookie's name; `__Secure-` makes browsers refuse it without `Secure`."""
        return "__Secure-refresh_token" if self.secure else "refresh_token"

    @staticmethod
    def wanted(header: Callable[[str], str | None]) -> bool:
        """Whether a request (its header getter) asks for the cookie transport."""
        return bool((header(HEADER) or "").strip())

    def read(self, cookie_header: str | None) -> str | None:
        """The refresh token in a request's `Cookie` header, if any."""
        if not cookie_header:
            return None
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(cookie_header)
        except CookieError:
            return None
        morsel = cookies.get(self.name)
        return morsel.value if morsel is not None and morsel.value else None

    def set(self, token: str, max_age: int) -> str:
        """The `Set-Cookie` value that stores `token` for `max_age` seconds."""
        return self._header(token, max_age)

    def clear(self) -> str:
        """The `Set-Cookie` value that deletes the cookie (logout)."""
        return self._header("", 0)

    def _header(self, value: str, max_age: int) -> str:
        parts = [f"{self.name}={value}", f"Path={PATH}", f"Max-Age={max(0, max_age)}"]
        parts += ["HttpOnly", "SameSite=Strict"] + (["Secure"] if self.secure else [])
        return "; ".join(parts)
