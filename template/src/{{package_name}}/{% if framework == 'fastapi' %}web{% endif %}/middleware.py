"""Pure ASGI middleware: what every request and response goes through, in one pass.

`Guard` bounds request bodies before they are buffered (a `Content-Length` over the bound is
refused at once; a chunked body as soon as it crosses it), adds the security headers, records
the client's address for security events, answers `HEAD` wherever `GET` works (RFC 9110
section 9.3.2; FastAPI's routes know only the methods they declare) and `OPTIONS` with the
resource's methods (as Flask does; a browser's preflight gets the CORS answer), and answers any unexpected
exception with the JSON 500 of the contract, logged once (Starlette's own handler would log it
again and re-raise).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.cors import CorsPolicy
from ..core.errors import BodyTooLarge, Problem, problem_for, problem_for_status
from ..core.events import client_address
from ..core.headers import security_headers

log = logging.getLogger(__name__)


class Guard:
    """Bounds bodies, adds security headers, notes the client, contains unexpected errors."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        production: bool,
        docs_paths: tuple[str, ...],
        cors: CorsPolicy,
        routes: Callable[[], Iterable[Any]] = tuple,
        client_of: Callable[[str | None, list[str]], str | None] = lambda peer, _: peer,
    ) -> None:
        self.app = app
        #: The client's address for security events: the peer, or as `TRUSTED_PROXIES` say.
        self._client_of = client_of
        #: The app's routes, read when first needed (every router is included by then).
        self._routes = routes
        self.max_body_bytes = max_body_bytes
        self.cors = cors
        self._headers = [
            _encoded(security_headers(docs_page=docs, production=production))
            for docs in (False, True)
        ]
        self._docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        forwarded = [
            value.decode("latin-1")
            for name, value in scope["headers"]
            if name == b"x-forwarded-for"
        ]
        client_address.set(self._client_of(client[0] if client else None, forwarded))
        docs = scope["path"].startswith(self._docs_paths) if self._docs_paths else False
        request_headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        origin = request_headers.get("origin")
        asked = request_headers.get("access-control-request-method")
        if scope["method"] == "OPTIONS" and origin and asked:  # a browser's preflight
            answer = self.cors.preflight_headers(
                origin, scope["path"], asked, request_headers.get("access-control-request-headers")
            )
            await _answer(send, Problem(204, {}, {**answer}), self._headers[False])
            return
        cors = _encoded(self.cors.response_headers(origin, scope["path"]))
        extra = [*self._headers[docs], *cors]
        head = scope["method"] == "HEAD"
        if head:  # the GET response's status and headers, without its body
            scope = {**scope, "method": "GET"}
        options = scope["method"] == "OPTIONS"
        started = bodiless = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started, bodiless
            if message["type"] == "http.response.start":
                started = True
                if message["status"] == 405:
                    message, bodiless = self._allow(message, scope["path"], options), options
                present = {name for name, _ in message["headers"]}
                headers = [pair for pair in extra if pair[0] not in present]
                message = {**message, "headers": [*message["headers"], *headers]}
            elif (head or bodiless) and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        length = _content_length(scope)
        if length is not None and length > self.max_body_bytes:
            await _answer(send_with_headers, problem_for(self._too_large()))
            return
        try:
            await self.app(scope, self._bounded(receive), send_with_headers)
        except Exception as exc:
            log.error("Unhandled error on %s %s", scope["method"], scope["path"], exc_info=exc)
            if not started:
                await _answer(send_with_headers, problem_for_status(500))

    def _allow(self, refusal: Message, path: str, options: bool) -> Message:
        """A 405 names every method of the resource in `Allow` (Starlette names only those of
        the first route that matched the path); `OPTIONS` gets them with 200 (RFC 9110
        section 9.3.7, as Flask answers it)."""
        methods = {"OPTIONS"}
        for route in self._routes():
            if getattr(route, "methods", None) and route.path_regex.match(path):
                methods |= route.methods
        if "GET" in methods:
            methods.add("HEAD")
        allow = (b"allow", ", ".join(sorted(methods)).encode())
        if options:
            headers = [allow, (b"content-length", b"0")]
            return {"type": "http.response.start", "status": 200, "headers": headers}
        others = [pair for pair in refusal["headers"] if pair[0] != b"allow"]
        return {**refusal, "headers": [*others, allow]}

    def _too_large(self) -> BodyTooLarge:
        return BodyTooLarge.over(self.max_body_bytes)

    def _bounded(self, receive: Receive) -> Receive:
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # An HTTPException passes through FastAPI's own body parsing unchanged;
                    # the app's handler answers it with the 413 of the contract.
                    raise HTTPException(413, self._too_large().detail)
            return message

        return bounded_receive


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _encoded(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


async def _answer(send: Send, problem: Problem, extra: list[Any] | None = None) -> None:
    """Answer without the app: an error in the envelope, or a bodiless 204."""
    body = json.dumps(problem.body).encode() if problem.body else b""
    headers: list[Any] = [
        *([(b"content-type", b"application/json")] if body else []),
        (b"content-length", str(len(body)).encode()),
        *([(b"connection", b"close")] if problem.status >= 400 else []),
        *_encoded(problem.headers),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
