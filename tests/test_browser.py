"""Browser clients in a real browser (headless Chromium, driven by Playwright): CORS and the
refresh-token cookie (`REFRESH_TOKEN_COOKIE`) against each framework's live server.

Three page origins, all on loopback, and the API at http://127.0.0.1:A:

- the allowed page, http://127.0.0.1:B (`CORS_ALLOWED_ORIGINS`): the same site as the API
  (cookies ignore ports), another origin;
- a same-site page that is not allowed, http://127.0.0.1:C;
- a cross-site page, http://localhost:C (localhost and 127.0.0.1 are different sites).

The pages are static HTML from `pages.serve_pages`; their scripts call the API with `fetch`,
`credentials: "include"` and `X-Requested-With`, as the README tells a page to. One browser per
module, a fresh context (cookie jar) per test. The browser resolves no name but localhost, so
nothing leaves the machine; every fetch and every wait is bounded.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
from liveserver import server_process
from pages import serve_pages
from projects import PYTHON, missing
from servers import TEST_SERVER_SETTINGS, server_env
from variants import FRAMEWORKS

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Cookie, Page, Playwright

sync_playwright: Callable[[], AbstractContextManager[Playwright]] | None
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the test skips (fails on CI) with the reason
    sync_playwright = None

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "correct horse battery"
#: Every Playwright wait and every fetch of a page, in milliseconds.
TIMEOUT_MS = 10_000
#: Only the two loopback names resolve in the browser.
LOOPBACK_ONLY = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"

#: The page a client script runs on. `call` is what a page does: every request with the custom
#: header (unless told otherwise) and credentials, and it reports a rejected fetch by the
#: error's name (a CORS refusal is a TypeError; a timeout would be a TimeoutError).
APP_PAGE = """<!doctype html>
<meta charset="utf-8"><title>app</title>
<script>
const API = new URLSearchParams(location.search).get("api");
async function call(method, path, {json, form, token, header = true, credentials = "include"} = {}) {
  const headers = {};
  if (header) headers["X-Requested-With"] = "XMLHttpRequest";
  if (token) headers["Authorization"] = "Bearer " + token;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = new URLSearchParams(form);
  }
  try {
    const response = await fetch(API + path, {
      method, headers, body, credentials, signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    const text = await response.text();
    const challenge = response.headers.get("WWW-Authenticate");  // exposed by CORS
    return {status: response.status, body: text ? JSON.parse(text) : null, challenge};
  } catch (error) {
    return {error: error.name, message: error.message};
  }
}
</script>
""".replace("TIMEOUT_MS", str(TIMEOUT_MS))

#: A cross-site request forgery: a form that posts itself to the refresh endpoint, with the
#: browser's cookies and no way to add a header.
FORM_PAGE = """<!doctype html>
<meta charset="utf-8"><title>form</title>
<form method="post"><input type="hidden" name="grant_type" value="refresh_token"></form>
<script>
const form = document.forms[0];
form.action = new URLSearchParams(location.search).get("api") + "/auth/refresh";
form.submit();
</script>
"""

#: The app page lives under /auth so that the refresh cookie (Path=/auth, any port of
#: 127.0.0.1) is in scope of its document: `document.cookie` leaves it out only for HttpOnly.
APP_PATH = "/auth/app.html"
PAGES = {APP_PATH: APP_PAGE, "/app.html": APP_PAGE, "/form.html": FORM_PAGE}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium, launched once for the module."""
    if sync_playwright is None:
        missing("the playwright package (the dev group of pyproject.toml)")
    if not CHROMIUM.exists():
        missing(f"Chromium at {CHROMIUM} (apt-get install chromium, or scripts/dev.py test)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=[LOOPBACK_ONLY], timeout=30_000
        )
        yield launched
        launched.close()


@dataclass(frozen=True)
class Origins:
    allowed: str
    same_site: str  # not allowed
    cross_site: str  # not allowed


@pytest.fixture(scope="module")
def origins(browser: Browser) -> Iterator[Origins]:
    """Two page servers, three page origins (the allowed one, and two that are not)."""
    with serve_pages(PAGES) as allowed, serve_pages(PAGES) as other:
        yield Origins(
            f"http://127.0.0.1:{allowed}", f"http://127.0.0.1:{other}", f"http://localhost:{other}"
        )


@pytest.fixture(scope="module", params=FRAMEWORKS, ids=lambda f: f"{f}-EdDSA-rotating")
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, origins: Origins
) -> Iterator[str]:
    """The framework's default variant, in development, with the cookie and CORS for the
    allowed page; yields its URL. (Rendered after `origins`: no rendering when skipped.)"""
    render = request.getfixturevalue("render")
    project = render(framework=request.param, jwt_algorithm="EdDSA")
    state = tmp_path_factory.mktemp("browser-server")
    # TEST_SERVER_SETTINGS have no refresh grace period: a refresh token presented twice is
    # always a reuse, so a refresh that worked proves no one (no forged request) used it before.
    env = server_env(
        project,
        state,
        **TEST_SERVER_SETTINGS,
        REFRESH_TOKEN_COOKIE="true",
        CORS_ALLOWED_ORIGINS=origins.allowed,
    )
    with server_process(project.path, project.framework, project.package, PYTHON, env=env) as s:
        yield s.url


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (its own cookie jar) for one test."""
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


def open_page(context: BrowserContext, origin: str, api: str, path: str = APP_PATH) -> Page:
    page = context.new_page()
    page.goto(f"{origin}{path}?api={quote(api, safe='')}")
    return page


def call(page: Page, method: str, path: str, **options: Any) -> dict[str, Any]:
    """Run the page's `call`: {status, body}, or {error, message} when the fetch rejected."""
    result: dict[str, Any] = page.evaluate("([m, p, o]) => call(m, p, o)", [method, path, options])
    return result


def put_back(context: BrowserContext, cookie: Cookie) -> None:
    """Put a copy of `cookie` (from `refresh_cookie`) back in the jar, as it was."""
    context.add_cookies(
        [
            {
                "name": cookie["name"],
                "value": cookie["value"],
                "domain": cookie["domain"],
                "path": cookie["path"],
                "httpOnly": cookie["httpOnly"],
                "secure": cookie["secure"],
                "sameSite": cookie["sameSite"],
            }
        ]
    )


def refresh_cookie(context: BrowserContext, api: str) -> Cookie | None:
    """The API's refresh-token cookie in the browser's jar (development: no `__Secure-`)."""
    found = [c for c in context.cookies(f"{api}/auth/refresh") if c["name"] == "refresh_token"]
    assert len(found) <= 1, found
    return found[0] if found else None


def sign_up(page: Page, login_as: str = "form") -> tuple[str, str]:
    """Register and log in (RFC 6749's form, or JSON) from the page; return the username and
    the access token."""
    username = f"user-{uuid.uuid4().hex[:10]}"
    credentials = {"username": username, "password": PASSWORD}
    registered = call(page, "POST", "/auth/register", json=credentials)
    assert registered["status"] == 201, registered
    login = call(
        page, "POST", "/auth/login", **{login_as: {"grant_type": "password", **credentials}}
    )
    assert login["status"] == 200, login
    assert login["body"]["access_token"]
    assert "refresh_token" not in login["body"], "the refresh token goes in the cookie only"
    return username, login["body"]["access_token"]


def test_a_page_keeps_its_session_in_the_cookie(
    api: str, origins: Origins, context: BrowserContext
) -> None:
    page = open_page(context, origins.allowed, api)
    username, access = sign_up(page)

    cookie = refresh_cookie(context, api)
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False  # development, plain HTTP
    assert cookie["path"] == "/auth"
    # In scope of the page's document (same host, path under /auth), and still invisible to it.
    assert page.evaluate("location.pathname").startswith("/auth/")
    assert cookie["value"] not in page.evaluate("document.cookie")
    assert "refresh_token" not in page.evaluate("document.cookie")

    me = call(page, "GET", "/users/me", token=access)
    assert me["status"] == 200, me
    assert me["body"]["username"] == username

    refreshed = call(page, "POST", "/auth/refresh")  # no body: the cookie is the token
    assert refreshed["status"] == 200, refreshed
    assert "refresh_token" not in refreshed["body"]
    new_access = refreshed["body"]["access_token"]
    assert new_access != access
    rotated = refresh_cookie(context, api)
    assert rotated is not None
    assert rotated["value"] != cookie["value"]
    assert call(page, "GET", "/users/me", token=new_access)["status"] == 200

    logout = call(page, "POST", "/auth/logout", token=new_access)
    assert (logout["status"], logout["body"]) == (204, None), logout
    assert refresh_cookie(context, api) is None  # deleted
    after = call(page, "POST", "/auth/refresh")
    assert after["status"] == 400, after
    # A copy of the cookie kept from before the logout is refused too: the login is revoked.
    put_back(context, rotated)
    replayed = call(page, "POST", "/auth/refresh")
    assert replayed["status"] == 400, replayed
    assert replayed["body"]["error"] == "invalid_grant"
    ended = call(page, "GET", "/users/me", token=new_access)
    assert ended["status"] == 401, ended
    # The challenge is readable by the page (Access-Control-Expose-Headers).
    assert ended["challenge"].startswith('Bearer error="invalid_token"'), ended


def forge_form_post(context: BrowserContext, origin: str, api: str) -> dict[str, str]:
    """Open the self-submitting form on `origin`; return the headers the browser sent with the
    forged POST, after checking that the API refused it."""
    page = context.new_page()
    with page.expect_response(f"{api}/auth/refresh") as answer:
        page.goto(f"{origin}/form.html?api={quote(api, safe='')}")
    response = answer.value
    assert response.request.method == "POST"
    assert response.status == 400, response.text()
    headers = response.request.all_headers()
    page.close()
    return headers


def test_other_origins_cannot_use_the_cookie(
    api: str, origins: Origins, context: BrowserContext
) -> None:
    page = open_page(context, origins.allowed, api)
    sign_up(page, login_as="json")
    cookie = refresh_cookie(context, api)
    assert cookie is not None

    for origin in (origins.cross_site, origins.same_site):
        other = open_page(context, origin, api, "/app.html")
        # An answer without CORS headers cannot be read: the fetch rejects.
        me = call(other, "GET", "/users/me", header=False)
        assert me["error"] == "TypeError", (origin, me)
        # With the header, the preflight is refused: the POST is never sent.
        refreshed = call(other, "POST", "/auth/refresh")
        assert refreshed["error"] == "TypeError", (origin, refreshed)
        # The JWK Set is public: readable from any origin, by a fetch without credentials (its
        # answer's `Access-Control-Allow-Origin: *` is refused to `credentials: "include"`).
        jwks = call(other, "GET", "/.well-known/jwks.json", header=False, credentials="same-origin")
        assert jwks["status"] == 200, (origin, jwks)
        assert jwks["body"]["keys"], jwks
        other.close()

    # A form cannot add the header. Cross-site, SameSite=Strict keeps the cookie off the POST;
    # same-site, the browser sends it, and the service ignores it for want of the header.
    assert "cookie" not in forge_form_post(context, origins.cross_site, api)
    sent = forge_form_post(context, origins.same_site, api)
    assert f"refresh_token={cookie['value']}" in sent.get("cookie", ""), sent

    # Nothing rotated the token: the jar holds it unchanged, and it works (once) from the page.
    assert refresh_cookie(context, api) == cookie
    refreshed = call(page, "POST", "/auth/refresh")
    assert refreshed["status"] == 200, refreshed
    rotated = refresh_cookie(context, api)
    assert rotated is not None
    assert rotated["value"] != cookie["value"]
    # Once only: had a forged request used it before, this is what the page would have got.
    put_back(context, cookie)
    reused = call(page, "POST", "/auth/refresh")
    assert reused["status"] == 400, reused
    assert reused["body"]["error"] == "invalid_grant"
