"""Headers every response carries (OWASP REST Security and HTTP Headers cheat sheets).

The API answers JSON only, so its pages may run nothing, be framed by nobody and leak no
referrer; the interactive docs (Swagger UI, served from this service, not a CDN) need their
own scripts and styles. HSTS is sent outside development, where TLS ends in front of the
service.
"""

from __future__ import annotations

API_POLICY = "default-src 'none'; frame-ancestors 'none'"
DOCS_POLICY = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)
HSTS = "max-age=63072000; includeSubDomains"


def security_headers(*, docs_page: bool, production: bool) -> dict[str, str]:
    """The headers to add to a response (a route's own `Cache-Control` is kept)."""
    headers = {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": DOCS_POLICY if docs_page else API_POLICY,
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    if production:
        headers["Strict-Transport-Security"] = HSTS
    return headers
